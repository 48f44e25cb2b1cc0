package awssim

import (
	"crypto/sha256"
	"os"
	"time"
)

// BlockSize is the size of an EBS block: 512 KiB.
const BlockSize = 512 << 10

// block is one immutable 512 KiB block of data and its SHA-256. Snapshots and
// volumes share blocks by pointer; a write makes a new block (copy on write),
// so two snapshots hold the same *block exactly when the block did not change
// between them.
type block struct {
	data []byte // len BlockSize
	sum  [32]byte
}

func newBlock(data []byte) *block {
	b := &block{data: make([]byte, BlockSize)}
	copy(b.data, data)
	b.sum = sha256.Sum256(b.data)
	return b
}

// snapshot is an EBS snapshot. blocks is the whole content (blocks inherited
// from a parent included); a missing index reads as zeros.
type snapshot struct {
	id          string
	volumeID    string // the volume it was taken from; "vol-ffffffff" for EBS direct snapshots
	parentID    string // EBS direct APIs' ParentSnapshotId
	state       string // pending | completed | error
	sizeGiB     int64
	description string
	encrypted   bool
	kmsKeyArn   string
	tags        map[string]string
	startTime   time.Time
	timeout     time.Duration // EBS direct: pending longer than this ends in error
	clientToken string
	progress    string
	// activity is when an EBS direct snapshot last started or took a block;
	// its timeout counts from here.
	activity time.Time
	// startParams is the canonical form of an EBS direct StartSnapshot's
	// parameters, ClientToken excluded, to tell a retry from a conflict.
	startParams string

	blocks map[int64]*block
	// changed counts the blocks written by PutSnapshotBlock while pending.
	written map[int64]bool
}

// volume is an EBS volume.
type volume struct {
	id         string
	snapshotID string
	sizeGiB    int64
	az         string
	volumeType string
	state      string // creating | available | in-use | deleting | deleted
	tags       map[string]string
	created    time.Time
	encrypted  bool
	kmsKeyID   string

	attachInstance string
	attachDevice   string
	attachState    string // attaching | attached | detaching | ""

	// EC2 bookkeeping (ec2_volumes.go).
	timer               stateTimer // creating, attaching, detaching
	attachTime          time.Time
	deleteOnTermination bool
	iops, throughput    int64

	// blocks is the volume's content, in memory; for a file-backed volume
	// (file set) it is the content as of its last snapshot, and the file
	// holds the data (volfile.go).
	blocks map[int64]*block
	file   *os.File
}

func cloneBlocks(m map[int64]*block) map[int64]*block {
	out := make(map[int64]*block, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
