package blockcopy

import (
	"context"

	"github.com/opendraas/draas"
)

func copyImpl(ctx context.Context, dst draas.VolumeSink, src draas.BlockSource, opts Options) (Stats, error) {
	return Stats{}, nil
}
