package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/opendraas/draas"
)

// opError returns a *draas.OpError for op on resource, whose Kind is the
// draas sentinel err belongs to (see [kind]) and whose Err is err itself, so
// that errors.Is matches the sentinel and errors.As still reaches govmomi's
// fault types. A nil err gives nil.
func opError(op, resource string, err error) error {
	if err == nil {
		return nil
	}
	var oe *draas.OpError
	if errors.As(err, &oe) && oe.Op == op && oe.Resource == resource {
		return err
	}
	return &draas.OpError{Op: op, Resource: resource, Kind: kind(err), Err: err}
}

// opErrorKind is [opError] with an explicit sentinel.
func opErrorKind(op, resource string, k, err error) error {
	return &draas.OpError{Op: op, Resource: resource, Kind: k, Err: err}
}

// kind returns the draas sentinel that an error from govmomi, vSphere or the
// datastore HTTP endpoint belongs to, or nil. It looks at the vSphere fault
// inside SOAP and task errors (not at message strings).
func kind(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	for _, s := range []error{draas.ErrNotFound, draas.ErrConflict, draas.ErrInvalid, draas.ErrThrottled, draas.ErrTransient, draas.ErrClosed} {
		if errors.Is(err, s) {
			return nil // already carries its sentinel
		}
	}
	if k := inFaults(err, faultKind); k != nil {
		return k
	}
	var nf *find.NotFoundError
	var dnf *find.DefaultNotFoundError
	if errors.As(err, &nf) || errors.As(err, &dnf) {
		return draas.ErrNotFound
	}
	var mf *find.MultipleFoundError
	var dmf *find.DefaultMultipleFoundError
	if errors.As(err, &mf) || errors.As(err, &dmf) {
		return draas.ErrInvalid
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.kind()
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) {
		var ce *CertificateError
		if errors.As(err, &ce) {
			return nil
		}
		return draas.ErrTransient
	}
	return nil
}

// inFaults calls f for each vSphere fault in err's chain until it returns a
// non-nil error, and returns that.
func inFaults(err error, f func(types.BaseMethodFault) error) (k error) {
	defer func() {
		// fault.In panics on chains it cannot walk (an Unwrap returning a
		// nil error); such a chain holds no fault worth finding.
		if recover() != nil {
			k = nil
		}
	}()
	fault.In(err, func(fl types.BaseMethodFault, _ string, _ []types.LocalizableMessage) bool {
		k = f(fl)
		return k != nil
	})
	return k
}

// faultKind maps a vSphere fault to a draas sentinel, or nil.
func faultKind(f types.BaseMethodFault) error {
	switch f.(type) {
	case *types.ManagedObjectNotFound, *types.NotFound, *types.FileNotFound:
		return draas.ErrNotFound
	case *types.DuplicateName, *types.FileAlreadyExists, *types.InvalidPowerState,
		*types.InvalidState, *types.InvalidDatastoreState, *types.InvalidHostState,
		*types.SnapshotFault, *types.VmConfigFault:
		return draas.ErrConflict
	case *types.TaskInProgress, *types.ConcurrentAccess, *types.HostCommunication,
		*types.HostNotConnected, *types.HostNotReachable, *types.RequestCanceled:
		return draas.ErrTransient
	case *types.InvalidArgument, *types.InvalidRequest, *types.InvalidDeviceSpec,
		*types.InvalidName, *types.InvalidType, *types.InvalidProperty, *types.NotSupported,
		*types.DeviceUnsupportedForVmPlatform, *types.InvalidVmConfig:
		return draas.ErrInvalid
	}
	return nil
}

// statusError is an unexpected answer of the datastore HTTP endpoint.
type statusError struct {
	method string
	path   string // datastore path, "[ds] dir/file"
	code   int
	status string
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("HTTP %s of datastore file %s: %s", e.method, e.path, e.status)
	switch {
	case e.code == http.StatusUnauthorized || e.code == http.StatusForbidden:
		msg += " (the session expired or lacks the Datastore.Browse / Datastore.FileManagement privilege)"
	case e.code == http.StatusNotFound:
		msg += " (no such file)"
	}
	return msg
}

func (e *statusError) kind() error {
	switch {
	case e.code == http.StatusNotFound:
		return draas.ErrNotFound
	case e.code == http.StatusTooManyRequests:
		return draas.ErrThrottled
	case e.code == http.StatusConflict:
		return draas.ErrConflict
	case e.code >= 500:
		return draas.ErrTransient
	}
	return nil
}
