// Package draastest provides in-memory fakes of the draas interfaces and
// conformance suites that every implementation runs.
//
// The fakes are reference implementations, not mocks: a [Disk] is a sparse
// in-memory disk that is a draas.BlockSource with every optional capability,
// a [Sink] is a draas.VolumeSink writing into a Disk that checks every
// block's checksum as EBS does, and [Cloud], [Hypervisor] and [DNS] model the
// control planes with their lifecycles. [Faults] injects failures, throttling,
// latency and corruption into any of them and into any source or sink
// ([FaultySource], [FaultySink]).
//
// The conformance suites ([TestBlockSource], [TestVolumeSink],
// [TestInstanceLauncher], [TestHypervisor], [TestDNS]) are exported in the
// manner of testing/fstest.TestFS, so that users can run them against their
// own implementations.
package draastest
