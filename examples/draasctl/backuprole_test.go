package main

import (
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// --backup-role reaches a bucket in another account; it makes no sense with
// --simulate, and --backup-external-id makes none without it.
func TestBackupRoleFlags(t *testing.T) {
	var std stdio
	std.stdout, std.stderr = io.Discard, io.Discard
	a, _, _, err := parse([]string{"--backup-role", "arn:aws:iam::222222222222:role/draas-backup-read", "--backup-external-id", "customer-42", "status", "p.yaml"}, std, os.Getenv)
	require.NoError(t, err)
	assert.Equal(t, "arn:aws:iam::222222222222:role/draas-backup-read", a.g.backupRole)
	assert.Equal(t, "customer-42", a.g.backupExternalID)

	_, _, _, err = parse([]string{"--backup-external-id", "customer-42", "status", "p.yaml"}, std, os.Getenv)
	assert.ErrorContains(t, err, "--backup-external-id goes with --backup-role")
	_, _, _, err = parse([]string{"--simulate", "--backup-role", "arn:aws:iam::222222222222:role/r", "status", "p.yaml"}, std, os.Getenv)
	assert.ErrorContains(t, err, "drop --endpoint, --s3-endpoint, --backup-role and --vcenter")
}
