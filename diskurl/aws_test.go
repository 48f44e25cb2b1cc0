package diskurl

import (
	"net/url"
	"strings"
	"testing"
)

// TestCloudURLs checks the forms of s3 and ebs URLs (moved from
// examples/diskcopy).
func TestCloudURLs(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		r    Role
		want s3Location
		err  string
	}{
		{"s3://b/p/q/vm/20261126T061000Z-5f3a9c0e/d", AsSource, s3Location{"b", "p/q", "vm", "20261126T061000Z-5f3a9c0e", "d"}, ""},
		{"s3://b/vm/latest/d", AsSource, s3Location{"b", "", "vm", "latest", "d"}, ""},
		{"s3://b/vm/new/d", AsSink, s3Location{"b", "", "vm", "new", "d"}, ""},
		{"s3://b/vm/new/d", AsSource, s3Location{}, "to read"},
		{"s3://b/vm/latest/d", AsSink, s3Location{}, "s3://b/vm/new/d"},
		{"s3://b/vm/d", AsSource, s3Location{}, "VM, the recovery point and the disk"},
		{"s3://b/p//vm/new/d", AsSink, s3Location{}, "VM, the recovery point and the disk"},
		{"s3:///vm/new/d", AsSink, s3Location{}, "a bucket"},
		{"s3://b/vm/new/d?x=1", AsSink, s3Location{}, "a bucket"},
	} {
		u, err := url.Parse(tc.arg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseS3(u, tc.r)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseS3(%s, %s) error = %v, want one saying %q", tc.arg, tc.r, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("parseS3(%s, %s) = %+v, %v; want %+v", tc.arg, tc.r, got, err, tc.want)
		case tc.err == "" && got.url() != tc.arg:
			t.Errorf("url() = %s, want %s", got.url(), tc.arg)
		}
	}
	for _, tc := range []struct {
		arg  string
		r    Role
		want ebsLocation
		err  string
	}{
		{"ebs://snap-0123", AsSource, ebsLocation{snapshot: "snap-0123"}, ""},
		{"ebs://new", AsSink, ebsLocation{}, ""},
		{"ebs://new?parent=snap-0123", AsSink, ebsLocation{parent: "snap-0123"}, ""},
		{"ebs://new", AsSource, ebsLocation{}, "name it"},
		{"ebs://snap-0123", AsSink, ebsLocation{}, "ebs://new?parent=snap-0123"},
		{"ebs://vol-0123", AsSource, ebsLocation{}, "snapshot ID"},
		{"ebs://snap-0123/x", AsSource, ebsLocation{}, "want ebs://snap-"},
		{"ebs://new?parent=vol-1", AsSink, ebsLocation{}, "parent=snap-"},
		{"ebs://new?size=3", AsSink, ebsLocation{}, "parent=snap-"},
	} {
		u, err := url.Parse(tc.arg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseEBS(u, tc.r)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseEBS(%s, %s) error = %v, want one saying %q", tc.arg, tc.r, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("parseEBS(%s, %s) = %+v, %v; want %+v", tc.arg, tc.r, got, err, tc.want)
		}
	}
}
