package gateway

import (
	"sync"
	"time"
)

// writerIdle is how long a writer goroutine waits for another session's
// run before it exits.
const writerIdle = time.Second

// writerPool runs sessions' writers (session.writeLoop) on goroutines that
// outlive one run. A frame for 1,000 parked connections then costs 1,000
// hand-offs to goroutines whose stacks have already grown to what a write
// needs, instead of 1,000 new goroutines that each grow theirs (a stack
// copy per frame per connection). A goroutine that waited writerIdle for
// work exits, so an idle gateway holds none.
type writerPool struct {
	work chan *session // unbuffered: only a waiting goroutine takes a run
	done chan struct{} // closed when the server closes
	once sync.Once
	wg   sync.WaitGroup
}

func newWriterPool() *writerPool {
	return &writerPool{work: make(chan *session), done: make(chan struct{})}
}

// run starts s's writer on a waiting goroutine, or on a new one.
func (p *writerPool) run(s *session) {
	select {
	case p.work <- s:
	default:
		p.wg.Add(1)
		go p.serve(s)
	}
}

func (p *writerPool) serve(s *session) {
	defer p.wg.Done()
	idle := time.NewTimer(writerIdle)
	defer idle.Stop()
	for {
		s.writeLoop()
		idle.Reset(writerIdle)
		select {
		case s = <-p.work:
		case <-idle.C:
			return
		case <-p.done:
			return
		}
	}
}

// close ends the waiting goroutines; sessions must have ended. Later
// calls do nothing more.
func (p *writerPool) close() {
	p.once.Do(func() { close(p.done) })
	p.wg.Wait()
}
