package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/opendraas/draas"
)

// pauseEnv names the test-only hook that makes a failover or drill wait at
// one step: DRAAS_TEST_PAUSE_AT=VM/STEP, STEP "volumes" or "launch". The
// step's cloud call is made (the volume or instance exists), then the run
// waits until it is interrupted, before the journal records the step: the
// worst moment for a crash, where a resumed run must find the resource its
// client token made instead of making a second one. Tests use it to send
// SIGINT at exactly that point. It is not for operators.
const pauseEnv = "DRAAS_TEST_PAUSE_AT"

// pausePoint returns the launcher with the hook of pauseEnv, or launcher
// itself when the variable is unset.
func pausePoint(launcher draas.InstanceLauncher, spec string, w io.Writer) (draas.InstanceLauncher, error) {
	if spec == "" {
		return launcher, nil
	}
	vm, step, ok := strings.Cut(spec, "/")
	if !ok || vm == "" || (step != "launch" && step != "volumes") {
		return nil, usagef("%s=%q: use VM/launch or VM/volumes", pauseEnv, spec)
	}
	return &pausingLauncher{InstanceLauncher: launcher, vm: vm, step: step, w: w}, nil
}

type pausingLauncher struct {
	draas.InstanceLauncher
	vm, step string
	w        io.Writer
}

// Unwrap returns the launcher it wraps, so that its optional capabilities
// (failover.Finder) stay visible.
func (p *pausingLauncher) Unwrap() any { return p.InstanceLauncher }

func (p *pausingLauncher) pause(ctx context.Context) error {
	fmt.Fprintf(p.w, "draasctl: test hook %s=%s/%s: paused after the step's cloud call, until interrupted\n", pauseEnv, p.vm, p.step)
	<-ctx.Done()
	return context.Cause(ctx)
}

func (p *pausingLauncher) CreateVolume(ctx context.Context, req draas.VolumeRequest) (string, error) {
	id, err := p.InstanceLauncher.CreateVolume(ctx, req)
	if err == nil && p.step == "volumes" && req.Tags[draas.TagVM] == p.vm {
		return id, p.pause(ctx)
	}
	return id, err
}

func (p *pausingLauncher) Launch(ctx context.Context, req draas.LaunchRequest) (draas.Instance, error) {
	inst, err := p.InstanceLauncher.Launch(ctx, req)
	if err == nil && p.step == "launch" && req.Tags[draas.TagVM] == p.vm {
		return inst, p.pause(ctx)
	}
	return inst, err
}
