package encode

import (
	"bytes"
	"fmt"
	"image"
	"runtime/debug"
	"testing"
	"time"

	"github.com/framecast/framecast/shared/frame"
	"github.com/gen2brain/webp"
)

func TestScratch(t *testing.T) {
	bi, ok := debug.ReadBuildInfo()
	fmt.Println(ok)
	if ok {
		for _, s := range bi.Settings {
			fmt.Println(s.Key, s.Value)
		}
	}
	fmt.Println("dynamic:", webp.Dynamic())
	m := image.NewNRGBA(image.Rect(0, 0, 4, 4))
	for i := range m.Pix {
		m.Pix[i] = uint8(i * 7)
	}
	st := time.Now()
	webp.Init()
	fmt.Println("init", time.Since(st))
	for _, q := range []int{80, 100} {
		b, err := Encode(m, frame.WEBP, q)
		fmt.Println(len(b), err)
		d, err := webp.Decode(bytes.NewReader(b))
		fmt.Printf("%T %v\n", d, err)
	}
}
