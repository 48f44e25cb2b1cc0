// Package draastest provides in-memory fakes of the draas interfaces and
// conformance suites that every implementation runs.
//
// The fakes are reference implementations, not mocks: a [Disk] is a sparse
// in-memory disk that is a draas.BlockSource with every optional capability,
// a [Sink] is a draas.VolumeSink writing into a Disk that checks every
// block's checksum as EBS does, [Cloud], [Hypervisor] and [DNS] model the
// control planes with their lifecycles, and [BackupStore] and [CopyStore]
// keep recovery points and DR copies (pending → completed), so that the
// workflows' unit tests need no simulator. [Faults] injects failures, throttling,
// latency and corruption into any of them and into any source or sink
// ([FaultySource], [FaultySink]).
//
// The conformance suites ([TestBlockSource], [TestVolumeSink],
// [TestInstanceLauncher], [TestHypervisor], [TestDNS], [TestBackupStore],
// [TestCopyStore]) are exported in the
// manner of testing/fstest.TestFS, so that users can run them against their
// own implementations.
package draastest
