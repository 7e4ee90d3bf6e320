package subject

import "fmt"

// Limits on ids, in bytes. MaxOutputID is the seed node's limit: its wire
// frame has 24 bytes for the output id.
const (
	MaxOutputID = 24
	MaxClientID = 128
)

// ValidateOutputID checks that id is 1..24 bytes of printable ASCII
// (0x20-0x7E).
func ValidateOutputID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: output_id is empty; it must be 1..%d bytes of printable ASCII", ErrInvalidID, MaxOutputID)
	}
	if len(id) > MaxOutputID {
		return fmt.Errorf("%w: output_id size is greater than %d bytes (got %d)", ErrInvalidID, MaxOutputID, len(id))
	}
	return printable("output_id", id)
}

// ValidateClientID checks that id is 0..128 bytes of printable ASCII. The
// empty id means broadcast.
func ValidateClientID(id string) error {
	if len(id) > MaxClientID {
		return fmt.Errorf("%w: client_id size is greater than %d bytes (got %d)", ErrInvalidID, MaxClientID, len(id))
	}
	return printable("client_id", id)
}

func printable(name, id string) error {
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 0x80:
			return fmt.Errorf("%w: %s is not ASCII encodable (byte 0x%02X at offset %d); allowed: printable ASCII 0x20-0x7E", ErrInvalidID, name, c, i)
		case c < 0x20 || c == 0x7F:
			return fmt.Errorf("%w: %s contains control character 0x%02X at offset %d; allowed: printable ASCII 0x20-0x7E", ErrInvalidID, name, c, i)
		}
	}
	return nil
}
