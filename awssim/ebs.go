package awssim

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The EBS direct APIs (service "ebs", protocol restJson1):
//
//	POST /snapshots                               StartSnapshot
//	PUT  /snapshots/{id}/blocks/{index}           PutSnapshotBlock
//	POST /snapshots/completion/{id}               CompleteSnapshot
//	GET  /snapshots/{id}/blocks                   ListSnapshotBlocks
//	GET  /snapshots/{second}/changedblocks        ListChangedBlocks
//	GET  /snapshots/{id}/blocks/{index}           GetSnapshotBlock
//
// Every operation first counts itself and consults the injected faults under
// its own name ("PutSnapshotBlock", ...), then the rate limits
// (EBSRateLimits), if any are set.

const (
	// ebsDirectVolumeID is the volume ID EC2 reports for snapshots made with
	// the EBS direct APIs.
	ebsDirectVolumeID = "vol-ffffffff"
	// ebsBlocksPerGiB is how many 512 KiB blocks make a GiB.
	ebsBlocksPerGiB = (1 << 30) / BlockSize
	// ebsMaxVolumeSizeGiB is the largest VolumeSize StartSnapshot accepts.
	ebsMaxVolumeSizeGiB = 64 << 10
	// ebsDefaultTimeout applies when StartSnapshot has no Timeout.
	ebsDefaultTimeout = 60 * time.Minute
)

var ebsSnapshotIDPattern = regexp.MustCompile(`^snap-[0-9a-f]+$`)

func (s *Server) serveEBS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Amzn-RequestId", ebsRequestID())
	op, handler, args := s.routeEBS(r)
	if handler == nil {
		writeEBSError(w, &ebsError{http.StatusNotFound, "UnknownOperationException", "",
			fmt.Sprintf("no EBS direct operation for %s %s", r.Method, r.URL.Path)})
		return
	}
	kind := s.fault(op)
	if kind != faultNone {
		io.Copy(io.Discard, r.Body) // let the client finish sending before it reads the error
		writeEBSError(w, faultError(kind))
		return
	}
	if err := s.faults.rates.allow(op, ebsRateSnapshot(op, args)); err != nil {
		io.Copy(io.Discard, r.Body)
		writeEBSError(w, err)
		return
	}
	if err := handler(w, r, args); err != nil {
		writeEBSError(w, err)
	}
}

type ebsHandler func(w http.ResponseWriter, r *http.Request, args []string) error

// routeEBS maps a request to its operation name, handler and path labels.
func (s *Server) routeEBS(r *http.Request) (string, ebsHandler, []string) {
	p := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case p[0] != "snapshots":
		return "", nil, nil
	case r.Method == http.MethodPost && len(p) == 1:
		return "StartSnapshot", s.startSnapshot, nil
	case r.Method == http.MethodPost && len(p) == 3 && p[1] == "completion":
		return "CompleteSnapshot", s.completeSnapshot, p[2:]
	case r.Method == http.MethodPut && len(p) == 4 && p[2] == "blocks":
		return "PutSnapshotBlock", s.putSnapshotBlock, p[1:4:4]
	case r.Method == http.MethodGet && len(p) == 4 && p[2] == "blocks":
		return "GetSnapshotBlock", s.getSnapshotBlock, p[1:4:4]
	case r.Method == http.MethodGet && len(p) == 3 && p[2] == "blocks":
		return "ListSnapshotBlocks", s.listSnapshotBlocks, p[1:2]
	case r.Method == http.MethodGet && len(p) == 3 && p[2] == "changedblocks":
		return "ListChangedBlocks", s.listChangedBlocks, p[1:2]
	}
	return "", nil, nil
}

// checkTimeout turns a pending EBS direct snapshot that saw no StartSnapshot
// or PutSnapshotBlock for longer than its timeout into state "error", as
// AWS cancels it. Time is evaluated lazily: every path that looks at a
// snapshot calls this first. Callers hold s.mu.
func (sn *snapshot) checkTimeout(now time.Time) {
	if sn.state == "pending" && sn.timeout > 0 && now.Sub(sn.activity) > sn.timeout {
		sn.state = "error"
	}
}

// ebsSnapshot finds snapshot id for an EBS direct call. Callers hold s.mu.
func (s *Server) ebsSnapshot(id string) (*snapshot, error) {
	if !ebsSnapshotIDPattern.MatchString(id) {
		return nil, ebsInvalid(reasonInvalidSnapshotID, "The snapshot ID '%s' is malformed.", id)
	}
	sn := s.snaps[id]
	if sn == nil {
		return nil, snapshotNotFound(id)
	}
	s.settleSnapshot(sn, false)
	return sn, nil
}

// readableSnapshot finds snapshot id for a read: the EBS direct APIs read
// only completed snapshots. Callers hold s.mu.
func (s *Server) readableSnapshot(id string) (*snapshot, error) {
	sn, err := s.ebsSnapshot(id)
	if err != nil {
		return nil, err
	}
	if sn.state != "completed" {
		return nil, ebsInvalid(reasonInvalidSnapshotID,
			"The snapshot '%s' is %s; only completed snapshots can be read.", id, sn.state)
	}
	return sn, nil
}

// writableSnapshot finds snapshot id for PutSnapshotBlock or
// CompleteSnapshot: a pending snapshot started with StartSnapshot. Callers
// hold s.mu.
func (s *Server) writableSnapshot(id string) (*snapshot, error) {
	sn, err := s.ebsSnapshot(id)
	if err != nil {
		return nil, err
	}
	switch {
	case sn.volumeID != ebsDirectVolumeID:
		return nil, ebsInvalid(reasonInvalidSnapshotID,
			"The snapshot '%s' was not started with StartSnapshot.", id)
	case sn.state == "error":
		return nil, ebsInvalid(reasonWriteTimeout,
			"The snapshot '%s' timed out after %v without a write.", id, sn.timeout)
	case sn.state != "pending":
		return nil, ebsInvalid(reasonInvalidSnapshotID, "The snapshot '%s' is %s, not pending.", id, sn.state)
	}
	return sn, nil
}

// blockIndex parses a BlockIndex label and checks it against the volume size.
func parseBlockIndex(label string, sn *snapshot) (int64, error) {
	idx, err := strconv.ParseInt(label, 10, 32)
	if err != nil || idx < 0 {
		return 0, ebsInvalid(reasonInvalidParameter, "The block index '%s' is not a non-negative integer.", label)
	}
	if sn != nil && idx >= sn.sizeGiB*ebsBlocksPerGiB {
		return 0, ebsInvalid(reasonInvalidBlock, "The block index %d is beyond the end of the %d GiB volume.",
			idx, sn.sizeGiB)
	}
	return idx, nil
}

// startSnapshotRequest is the JSON body of StartSnapshot.
type startSnapshotRequest struct {
	VolumeSize       *int64   `json:"VolumeSize,omitempty"`
	ParentSnapshotId *string  `json:"ParentSnapshotId,omitempty"`
	Tags             []ebsTag `json:"Tags,omitempty"`
	Description      *string  `json:"Description,omitempty"`
	ClientToken      *string  `json:"ClientToken,omitempty"`
	Encrypted        *bool    `json:"Encrypted,omitempty"`
	KmsKeyArn        *string  `json:"KmsKeyArn,omitempty"`
	Timeout          *int32   `json:"Timeout,omitempty"`
}

// startSnapshotResponse is the JSON body StartSnapshot returns.
type startSnapshotResponse struct {
	BlockSize        int32     `json:"BlockSize"`
	Description      string    `json:"Description,omitempty"`
	KmsKeyArn        string    `json:"KmsKeyArn,omitempty"`
	OwnerId          string    `json:"OwnerId"`
	ParentSnapshotId string    `json:"ParentSnapshotId,omitempty"`
	SnapshotId       string    `json:"SnapshotId"`
	StartTime        epochTime `json:"StartTime"`
	Status           string    `json:"Status"`
	Tags             []ebsTag  `json:"Tags,omitempty"`
	VolumeSize       int64     `json:"VolumeSize"`
}

func (s *Server) startSnapshot(w http.ResponseWriter, r *http.Request, _ []string) error {
	var req startSnapshotRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return ebsInvalid(reasonInvalidParameter, "The request body is not valid JSON: %v", err)
	}
	if err := req.validate(); err != nil {
		return err
	}
	token := ebsDeref(req.ClientToken)
	req.ClientToken = nil
	slices.SortFunc(req.Tags, func(a, b ebsTag) int { return strings.Compare(a.Key, b.Key) })
	params, _ := json.Marshal(req)

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if token != "" {
		for _, sn := range s.snaps {
			if sn.clientToken != token || sn.volumeID != ebsDirectVolumeID {
				continue
			}
			if sn.startParams != string(params) {
				return &ebsError{http.StatusConflict, ebsConflict, "",
					fmt.Sprintf("The client token '%s' was used with different parameters.", token)}
			}
			sn.checkTimeout(now)
			writeEBSJSON(w, http.StatusCreated, s.startResponse(sn))
			return nil
		}
	}

	sn := &snapshot{
		volumeID:    ebsDirectVolumeID,
		state:       "pending",
		sizeGiB:     *req.VolumeSize,
		description: ebsDeref(req.Description),
		encrypted:   ebsDeref(req.Encrypted),
		kmsKeyArn:   ebsDeref(req.KmsKeyArn),
		tags:        map[string]string{},
		startTime:   now,
		activity:    now,
		timeout:     ebsDefaultTimeout,
		clientToken: token,
		startParams: string(params),
		blocks:      map[int64]*block{},
		written:     map[int64]bool{},
	}
	if req.Timeout != nil {
		sn.timeout = time.Duration(*req.Timeout) * time.Minute
	}
	for _, t := range req.Tags {
		sn.tags[t.Key] = t.Value
	}
	if id := ebsDeref(req.ParentSnapshotId); id != "" {
		parent, err := s.ebsSnapshot(id)
		if err != nil {
			return err
		}
		if parent.state != "completed" {
			return ebsInvalid(reasonInvalidSnapshotID, "The parent snapshot '%s' is %s, not completed.", id, parent.state)
		}
		if sn.sizeGiB < parent.sizeGiB {
			return ebsInvalid(reasonInvalidVolumeSize,
				"The volume size %d GiB is smaller than the parent snapshot's %d GiB.", sn.sizeGiB, parent.sizeGiB)
		}
		sn.parentID = id
		sn.blocks = cloneBlocks(parent.blocks)
		if parent.encrypted {
			sn.encrypted = true
			if sn.kmsKeyArn == "" {
				sn.kmsKeyArn = parent.kmsKeyArn
			}
		}
	}
	if sn.kmsKeyArn != "" {
		sn.encrypted = true
	}
	if sn.encrypted && sn.kmsKeyArn == "" {
		sn.kmsKeyArn = s.ebsDefaultKMSKeyARN()
	}
	sn.id = s.newID("snap")
	s.snaps[sn.id] = sn
	writeEBSJSON(w, http.StatusCreated, s.startResponse(sn))
	return nil
}

// validate checks StartSnapshot's parameters against the service model.
func (req *startSnapshotRequest) validate() error {
	switch {
	case req.VolumeSize == nil:
		return ebsInvalid(reasonInvalidParameter, "VolumeSize is required.")
	case *req.VolumeSize < 1 || *req.VolumeSize > ebsMaxVolumeSizeGiB:
		return ebsInvalid(reasonInvalidVolumeSize, "The volume size must be 1 to %d GiB, not %d.",
			ebsMaxVolumeSizeGiB, *req.VolumeSize)
	case req.Encrypted != nil && req.ParentSnapshotId != nil:
		return ebsInvalid(reasonInvalidParameter, "Encrypted and ParentSnapshotId cannot be specified together.")
	case req.Timeout != nil && (*req.Timeout < 10 || *req.Timeout > 4320):
		return ebsInvalid(reasonInvalidParameter, "Timeout must be 10 to 4320 minutes, not %d.", *req.Timeout)
	case len(ebsDeref(req.Description)) > 255:
		return ebsInvalid(reasonInvalidParameter, "The description is longer than 255 characters.")
	case len(ebsDeref(req.ClientToken)) > 255:
		return ebsInvalid(reasonInvalidParameter, "The client token is longer than 255 characters.")
	case req.KmsKeyArn != nil && !strings.Contains(*req.KmsKeyArn, ":kms:"):
		return ebsInvalid(reasonInvalidParameter, "'%s' is not a KMS key ARN.", *req.KmsKeyArn)
	case len(req.Tags) > 50:
		return ebsInvalid(reasonInvalidTag, "A snapshot can have at most 50 tags.")
	}
	seen := map[string]bool{}
	for _, t := range req.Tags {
		switch {
		case t.Key == "" || len(t.Key) > 127 || len(t.Value) > 255:
			return ebsInvalid(reasonInvalidTag, "The tag '%s' has an empty or too long key or value.", t.Key)
		case strings.HasPrefix(strings.ToLower(t.Key), "aws:"):
			return ebsInvalid(reasonInvalidTag, "Tag keys starting with 'aws:' are reserved.")
		case seen[t.Key]:
			return ebsInvalid(reasonInvalidTag, "The tag key '%s' appears twice.", t.Key)
		}
		seen[t.Key] = true
	}
	return nil
}

// ebsDefaultKMSKeyARN is the ARN of the account's default EBS KMS key.
func (s *Server) ebsDefaultKMSKeyARN() string {
	return fmt.Sprintf("arn:aws:kms:%s:%s:key/00000000-0000-0000-0000-00000000eb50",
		s.opts.Region, s.opts.AccountID)
}

func (s *Server) startResponse(sn *snapshot) startSnapshotResponse {
	out := startSnapshotResponse{
		BlockSize:        BlockSize,
		Description:      sn.description,
		KmsKeyArn:        sn.kmsKeyArn,
		OwnerId:          s.opts.AccountID,
		ParentSnapshotId: sn.parentID,
		SnapshotId:       sn.id,
		StartTime:        epochTime(sn.startTime),
		Status:           sn.state,
		VolumeSize:       sn.sizeGiB,
	}
	for _, k := range slices.Sorted(maps.Keys(sn.tags)) {
		out.Tags = append(out.Tags, ebsTag{k, sn.tags[k]})
	}
	return out
}

func (s *Server) putSnapshotBlock(w http.ResponseWriter, r *http.Request, args []string) error {
	// Read the whole body first, whatever happens: the SDK streams it, and
	// answering before it is consumed would turn an API error into a
	// broken connection on the client's side.
	data := make([]byte, BlockSize)
	n, _ := io.ReadFull(r.Body, data)
	extra, _ := io.Copy(io.Discard, r.Body)

	h := r.Header
	if v := h.Get("X-Amz-Data-Length"); v != strconv.Itoa(BlockSize) {
		return ebsInvalid(reasonInvalidParameter, "DataLength must be %d, not '%s'.", BlockSize, v)
	}
	if v := h.Get("X-Amz-Checksum-Algorithm"); v != "SHA256" {
		return ebsInvalid(reasonInvalidParameter, "ChecksumAlgorithm must be SHA256, not '%s'.", v)
	}
	want, err := base64.StdEncoding.DecodeString(h.Get("X-Amz-Checksum"))
	if err != nil || len(want) != sha256.Size {
		return ebsInvalid(reasonInvalidParameter, "Checksum must be a Base64-encoded SHA256 digest.")
	}
	progress := -1
	if v := h.Get("X-Amz-Progress"); v != "" {
		if progress, err = strconv.Atoi(v); err != nil || progress < 0 || progress > 100 {
			return ebsInvalid(reasonInvalidParameter, "Progress must be 0 to 100, not '%s'.", v)
		}
	}
	if int64(n)+extra != BlockSize {
		return ebsInvalid(reasonInvalidParameter, "Failed to read block data: got %d bytes, DataLength says %d.",
			int64(n)+extra, BlockSize)
	}
	b := &block{data: data, sum: sha256.Sum256(data)}
	if string(b.sum[:]) != string(want) {
		return ebsInvalid(reasonInvalidParameter,
			"The checksum of the block data does not match the Checksum header: %s != %s.",
			base64.StdEncoding.EncodeToString(b.sum[:]), h.Get("X-Amz-Checksum"))
	}

	s.mu.Lock()
	sn, err := s.writableSnapshot(args[0])
	var idx int64
	if err == nil {
		idx, err = parseBlockIndex(args[2], sn)
	}
	if err != nil {
		s.mu.Unlock()
		return err
	}
	sn.blocks[idx] = b
	sn.written[idx] = true
	sn.activity = s.now()
	if progress >= 0 {
		sn.progress = strconv.Itoa(progress) + "%"
	}
	s.mu.Unlock()

	w.Header().Set("X-Amz-Checksum", base64.StdEncoding.EncodeToString(b.sum[:]))
	w.Header().Set("X-Amz-Checksum-Algorithm", "SHA256")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (s *Server) completeSnapshot(w http.ResponseWriter, r *http.Request, args []string) error {
	h := r.Header
	count, err := strconv.Atoi(h.Get("X-Amz-ChangedBlocksCount"))
	if err != nil || count < 0 {
		return ebsInvalid(reasonInvalidParameter, "ChangedBlocksCount must be a non-negative integer, not '%s'.",
			h.Get("X-Amz-ChangedBlocksCount"))
	}
	var want []byte
	if v := h.Get("X-Amz-Checksum"); v != "" {
		if a := h.Get("X-Amz-Checksum-Algorithm"); a != "SHA256" {
			return ebsInvalid(reasonInvalidParameter, "ChecksumAlgorithm must be SHA256, not '%s'.", a)
		}
		if m := h.Get("X-Amz-Checksum-Aggregation-Method"); m != "LINEAR" {
			return ebsInvalid(reasonInvalidParameter, "ChecksumAggregationMethod must be LINEAR, not '%s'.", m)
		}
		if want, err = base64.StdEncoding.DecodeString(v); err != nil || len(want) != sha256.Size {
			return ebsInvalid(reasonInvalidParameter, "Checksum must be a Base64-encoded SHA256 digest.")
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	sn, err := s.ebsSnapshot(args[0])
	if err != nil {
		return err
	}
	if sn.state != "completed" || sn.volumeID != ebsDirectVolumeID { // completing twice is harmless
		if _, err := s.writableSnapshot(sn.id); err != nil {
			return err
		}
	}
	if count != len(sn.written) {
		return ebsInvalid(reasonInvalidParameter,
			"ChangedBlocksCount is %d but %d blocks were written to the snapshot.", count, len(sn.written))
	}
	if want != nil {
		idxs := slices.Sorted(maps.Keys(sn.written))
		sums := make([][32]byte, len(idxs))
		for i, idx := range idxs {
			sums[i] = sn.blocks[idx].sum
		}
		if got := linearChecksum(sums); string(got[:]) != string(want) {
			return ebsInvalid(reasonInvalidParameter,
				"The aggregated checksum %s does not match the %s computed from the written blocks.",
				h.Get("X-Amz-Checksum"), base64.StdEncoding.EncodeToString(got[:]))
		}
	}
	sn.state = "completed"
	sn.progress = "100%"
	writeEBSJSON(w, http.StatusAccepted, struct {
		Status string `json:"Status"`
	}{sn.state})
	return nil
}

// ebsListQuery is what both listings take from the query string.
type ebsListQuery struct {
	max   int
	token string
	start int64
}

func parseEBSListQuery(r *http.Request) (ebsListQuery, error) {
	q := r.URL.Query()
	l := ebsListQuery{max: 10000, token: q.Get("pageToken")}
	if v := q.Get("maxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return l, ebsInvalid(reasonInvalidParameter, "MaxResults '%s' is not an integer.", v)
		}
		// Like AWS, a MaxResults below 100 still returns up to 100 blocks.
		l.max = min(max(n, 100), 10000)
	}
	if v := q.Get("startingBlockIndex"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return l, ebsInvalid(reasonInvalidParameter, "StartingBlockIndex '%s' is not a non-negative integer.", v)
		}
		l.start = n
	}
	return l, nil
}

// page returns the indices (ascending) of one page of a listing and the
// index the next page starts at, or -1 if this page is the last. Callers
// hold s.mu.
func (s *Server) listPage(l ebsListQuery, kind string, ids [2]string, idxs []int64) ([]int64, int64, error) {
	start := l.start
	if l.token != "" {
		var err error
		if start, err = s.checkPageToken(l.token, kind, ids); err != nil {
			return nil, 0, err
		}
	}
	slices.Sort(idxs)
	i, _ := slices.BinarySearch(idxs, start)
	idxs = idxs[i:]
	if len(idxs) > l.max {
		return idxs[:l.max], idxs[l.max], nil
	}
	return idxs, -1, nil
}

type listSnapshotBlocksResponse struct {
	BlockSize  int32           `json:"BlockSize"`
	Blocks     []ebsBlockEntry `json:"Blocks"`
	ExpiryTime epochTime       `json:"ExpiryTime"`
	NextToken  string          `json:"NextToken,omitempty"`
	VolumeSize int64           `json:"VolumeSize"`
}

type ebsBlockEntry struct {
	BlockIndex int64  `json:"BlockIndex"`
	BlockToken string `json:"BlockToken"`
}

func (s *Server) listSnapshotBlocks(w http.ResponseWriter, r *http.Request, args []string) error {
	l, err := parseEBSListQuery(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, err := s.readableSnapshot(args[0])
	if err != nil {
		return err
	}
	ids := [2]string{sn.id, ""}
	idxs, next, err := s.listPage(l, "list", ids, slices.Collect(maps.Keys(sn.blocks)))
	if err != nil {
		return err
	}
	expiry := s.now().Add(blockTokenLifetime)
	out := listSnapshotBlocksResponse{
		BlockSize:  BlockSize,
		Blocks:     make([]ebsBlockEntry, len(idxs)),
		ExpiryTime: epochTime(expiry),
		VolumeSize: sn.sizeGiB,
	}
	for i, idx := range idxs {
		out.Blocks[i] = ebsBlockEntry{idx, s.blockToken(sn.id, idx, expiry)}
	}
	if next >= 0 {
		out.NextToken = s.pageToken("list", ids, next)
	}
	writeEBSJSON(w, http.StatusOK, out)
	return nil
}

type listChangedBlocksResponse struct {
	BlockSize     int32             `json:"BlockSize"`
	ChangedBlocks []ebsChangedBlock `json:"ChangedBlocks"`
	ExpiryTime    epochTime         `json:"ExpiryTime"`
	NextToken     string            `json:"NextToken,omitempty"`
	VolumeSize    int64             `json:"VolumeSize"`
}

type ebsChangedBlock struct {
	BlockIndex       int64  `json:"BlockIndex"`
	FirstBlockToken  string `json:"FirstBlockToken,omitempty"`
	SecondBlockToken string `json:"SecondBlockToken,omitempty"`
}

func (s *Server) listChangedBlocks(w http.ResponseWriter, r *http.Request, args []string) error {
	l, err := parseEBSListQuery(r)
	if err != nil {
		return err
	}
	firstID := r.URL.Query().Get("firstSnapshotId")
	s.mu.Lock()
	defer s.mu.Unlock()
	second, err := s.readableSnapshot(args[0])
	if err != nil {
		return err
	}
	first := &snapshot{} // no first snapshot: every block of the second changed
	if firstID != "" {
		if first, err = s.readableSnapshot(firstID); err != nil {
			return err
		}
		if !s.snapshotsRelated(first, second) {
			return ebsInvalid(reasonUnrelated, "The snapshots '%s' and '%s' are not of the same volume or snapshot lineage.",
				first.id, second.id)
		}
	}
	var changed []int64
	for idx, b := range second.blocks {
		if first.blocks[idx] != b {
			changed = append(changed, idx)
		}
	}
	for idx := range first.blocks {
		if _, ok := second.blocks[idx]; !ok {
			changed = append(changed, idx)
		}
	}
	ids := [2]string{first.id, second.id}
	idxs, next, err := s.listPage(l, "changed", ids, changed)
	if err != nil {
		return err
	}
	expiry := s.now().Add(blockTokenLifetime)
	out := listChangedBlocksResponse{
		BlockSize:     BlockSize,
		ChangedBlocks: make([]ebsChangedBlock, len(idxs)),
		ExpiryTime:    epochTime(expiry),
		VolumeSize:    second.sizeGiB,
	}
	for i, idx := range idxs {
		c := ebsChangedBlock{BlockIndex: idx}
		if first.blocks[idx] != nil {
			c.FirstBlockToken = s.blockToken(first.id, idx, expiry)
		}
		if second.blocks[idx] != nil {
			c.SecondBlockToken = s.blockToken(second.id, idx, expiry)
		}
		out.ChangedBlocks[i] = c
	}
	if next >= 0 {
		out.NextToken = s.pageToken("changed", ids, next)
	}
	writeEBSJSON(w, http.StatusOK, out)
	return nil
}

// related reports whether two snapshots are of the same volume or snapshot
// lineage, which ListChangedBlocks requires: they share an ancestor through
// ParentSnapshotId, the volume they were taken from or the snapshot that
// volume was created from, or (when the records of that lineage are gone)
// they still share a block. Callers hold s.mu.
func (s *Server) snapshotsRelated(a, b *snapshot) bool {
	la := s.snapshotLineage(a)
	for k := range s.snapshotLineage(b) {
		if la[k] {
			return true
		}
	}
	for idx, blk := range a.blocks {
		if b.blocks[idx] == blk {
			return true
		}
	}
	return len(a.blocks) == 0 || len(b.blocks) == 0
}

// lineage returns the IDs of a snapshot, its ancestors and the volumes they
// were taken from (the EBS direct placeholder volume excluded). Callers hold
// s.mu.
func (s *Server) snapshotLineage(sn *snapshot) map[string]bool {
	out := map[string]bool{}
	todo := []string{sn.id}
	for len(todo) > 0 {
		id := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if id == "" || id == ebsDirectVolumeID || out[id] {
			continue
		}
		out[id] = true
		if cur := s.snaps[id]; cur != nil {
			todo = append(todo, cur.parentID, cur.volumeID)
		} else if v := s.vols[id]; v != nil {
			todo = append(todo, v.snapshotID)
		}
	}
	return out
}

func (s *Server) getSnapshotBlock(w http.ResponseWriter, r *http.Request, args []string) error {
	token := r.URL.Query().Get("blockToken")
	s.mu.Lock()
	sn, err := s.readableSnapshot(args[0])
	var idx int64
	if err == nil {
		idx, err = parseBlockIndex(args[2], sn)
	}
	if err == nil && !s.checkBlockToken(token, sn.id, idx) {
		err = ebsInvalid(reasonInvalidBlockToken, "The block token is not valid for block %d of snapshot '%s' or has expired.",
			idx, sn.id)
	}
	var b *block
	if err == nil {
		b = sn.blocks[idx]
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if b == nil { // a valid token for an unwritten block: it reads as zeros
		b = newBlock(nil)
	}

	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(BlockSize))
	h.Set("X-Amz-Data-Length", strconv.Itoa(BlockSize))
	h.Set("X-Amz-Checksum", base64.StdEncoding.EncodeToString(b.sum[:]))
	h.Set("X-Amz-Checksum-Algorithm", "SHA256")
	w.WriteHeader(http.StatusOK)
	w.Write(b.data) // blocks are immutable: no lock needed
	return nil
}

func ebsDeref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
