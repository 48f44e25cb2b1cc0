package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/vsphere"
)

// siteHypervisor is a vCenter session: the hypervisor failback writes to.
type siteHypervisor interface {
	draas.Hypervisor
	Close(ctx context.Context) error
}

// dialVSphere logs in to the vCenter of --vcenter with the credentials of
// --vsphere-credentials or DRAAS_VSPHERE_USER and DRAAS_VSPHERE_PASSWORD.
func (a *app) dialVSphere(ctx context.Context) (siteHypervisor, error) {
	h, err := a.dialVCenter(ctx, "failback writes to vSphere")
	if err != nil {
		return nil, err
	}
	return h, nil
}

// noVCenter is the usage error of a command that needs --vcenter; why
// says what the command does with it.
func noVCenter(why string) error {
	return usagef("%s: pass --vcenter URL, with credentials in DRAAS_VSPHERE_USER and DRAAS_VSPHERE_PASSWORD or --vsphere-credentials FILE (or try it with --simulate)", why)
}

// dialVCenter logs in to the vCenter of --vcenter, as dialVSphere does;
// why says what the command needs it for.
func (a *app) dialVCenter(ctx context.Context, why string) (*vsphere.Hypervisor, error) {
	if a.g.vcenter == "" {
		return nil, noVCenter(why)
	}
	user, pass, err := a.vsphereCredentials()
	if err != nil {
		return nil, err
	}
	h, err := vsphere.Dial(ctx, a.g.vcenter, vsphere.Options{
		Username: user, Password: pass, Thumbprint: a.g.thumbprint,
		Datacenter: a.g.datacenter, Cluster: a.g.cluster, Datastore: a.g.datastore,
		Network: a.g.network, Folder: a.g.folder,
	})
	if err != nil {
		return nil, fmt.Errorf("vCenter %s: %w", a.g.vcenter, err)
	}
	return h, nil
}

// vsphereCredentials reads the user and password from the file of
// --vsphere-credentials (lines user=… and password=…; # starts a comment)
// or else from the environment.
func (a *app) vsphereCredentials() (user, pass string, err error) {
	if a.g.credentials == "" {
		user, pass = a.getenv("DRAAS_VSPHERE_USER"), a.getenv("DRAAS_VSPHERE_PASSWORD")
		if user == "" || pass == "" {
			return "", "", usagef("no vSphere credentials: set DRAAS_VSPHERE_USER and DRAAS_VSPHERE_PASSWORD, or pass --vsphere-credentials FILE")
		}
		return user, pass, nil
	}
	data, err := os.ReadFile(a.g.credentials)
	if err != nil {
		return "", "", usagef("--vsphere-credentials: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		switch strings.TrimSpace(k) {
		case "user":
			user = strings.TrimSpace(v)
		case "password":
			pass = strings.TrimSpace(v)
		default:
			ok = false
		}
		if !ok {
			// Never quote the line: it may hold the password.
			return "", "", usagef("%s:%d: expected user=… or password=…", a.g.credentials, n)
		}
	}
	if user == "" || pass == "" {
		return "", "", usagef("%s: set both user=… and password=…", a.g.credentials)
	}
	return user, pass, nil
}
