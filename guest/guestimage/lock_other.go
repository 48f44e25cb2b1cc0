//go:build !unix

package guestimage

import (
	"context"
	"fmt"
)

func lockFile(ctx context.Context, path string) (func(), error) {
	return nil, fmt.Errorf("guestimage: building images needs Linux: %w", ErrMissingTools)
}
