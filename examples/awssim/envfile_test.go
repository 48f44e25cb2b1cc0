package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "awssim.env")
	if err := writeEnvFile(path, "http://127.0.0.1:1", "http://127.0.0.1:2"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("AWSSIM_ENDPOINT=http://127.0.0.1:1\nAWSSIM_S3_ENDPOINT=http://127.0.0.1:2\nAWSSIM_PID=%d\n", os.Getpid())
	if string(got) != want {
		t.Errorf("env file:\n%s\nwant:\n%s", got, want)
	}
	if _, err := os.Stat(path + ".tmp"); err == nil {
		t.Error("the temporary file is left beside the env file")
	}
}
