package natsurl

import (
	"errors"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"one", "nats://127.0.0.1:4222", true},
		{"cluster with users", "nats://u:p@nats-1:4222, nats://u:p@nats-2:4222", true},
		{"no scheme", "127.0.0.1:4222", true},
		{"tls", "tls://nats.example.com:4222", true},
		{"empty", "", false},
		{"empty member", "nats://a:4222,", false},
		{"http scheme", "http://a:4222", false},
		{"typo scheme", "htp:/bad url", false},
		{"no host", "nats://:4222", false},
		{"space in host", "nats://a b:4222", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.in)
			if tt.ok && err != nil {
				t.Fatalf("Validate(%q) = %v; want nil", tt.in, err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate(%q) = %v; want ErrInvalid", tt.in, err)
			}
		})
	}
}
