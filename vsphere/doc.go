// Package vsphere is the on-premises side of draas: a draas.Hypervisor on
// VMware vCenter or ESXi through govmomi, with disk sources and sinks and a
// snapshot-based backup with Changed Block Tracking (CBT).
//
// [Dial] connects and logs in (TLS verification on by default; a
// certificate may be pinned by its thumbprint); [New] wraps a client the
// caller already has. A [Hypervisor] reads a VM's shape, creates VMs of a
// shape, writes and reads their disks, powers them and reconfigures them.
// [Hypervisor.BackupDisks] snapshots a running VM and returns a source per
// disk bound to the snapshot, with the disks' CBT change IDs.
//
// # Data path
//
// Disk data moves as the disk's flat extent (the "-flat.vmdk" file a thin or
// thick disk's descriptor names) over the datastore HTTP endpoint,
// https://vcenter/folder/PATH?dcPath=DC&dsName=DS:
//
//   - a [Source] reads with one HTTP range request per ReadAt; a file
//     shorter than its disk reads as zeros past its end;
//   - a [Sink] gathers blocks in a sparse local temporary file and, at
//     Commit, uploads it with one PUT in place of the flat extent.
//
// This is the one path that works both against vSphere and against vcsim,
// govmomi's simulator, on which this package is tested: vcsim serves
// datastores over /folder from a local directory and keeps a VM disk's data
// in exactly such a flat file, while its NFC leases (ExportVm,
// ExportSnapshot, ImportVApp) hand out descriptor files rather than disk
// streams. It costs what it says: a commit uploads the disk's whole size
// (zeros included, and a thin disk on VMFS becomes fully allocated), the
// VM must be powered off while a disk is written or read live, and only
// disks whose data is one flat extent work (VMFS and NFS datastores; not
// vSAN or vVols, not RDMs, not a VM running on snapshot delta disks). Those
// fail with draas.ErrInvalid or draas.ErrConflict naming the disk and the
// fix. Transfers go through vCenter; govmomi's GOVMOMI_USE_SERVICE_TICKET
// host tickets are not used.
//
// # Changed Block Tracking
//
// With CBT on ([Hypervisor.SetChangeTracking]), the sources of
// [Hypervisor.ReadDisk] and [Hypervisor.BackupDisks] are also a
// draas.ChangeTracker and a draas.ExtentSource: ChangedExtents(base) and
// AllocatedExtents call QueryChangedDiskAreas for the snapshot (or, for a
// powered-off VM's live disk, the current state), paging until the answers
// cover the disk. base is a change ID a previous backup recorded
// (the ChangeID of a [BackupDisk]), or "*" for all allocated areas. A base vSphere
// does not know fails with draas.ErrNotFound and the caller copies the whole
// disk. Writing a disk through a [Sink] bypasses the tracker, so Commit
// resets CBT on the VM: every earlier change ID stops working, and the next
// backup is a full one.
//
// # Errors
//
// Errors are *draas.OpError values naming the operation and the VM, disk,
// datastore file or server, wrapping both a draas sentinel (ErrNotFound,
// ErrConflict, ErrInvalid, ErrTransient, ErrThrottled, mapped from the
// vSphere fault or HTTP status) and govmomi's error, so errors.Is and
// errors.As both work. An untrusted server certificate is a
// *[CertificateError] carrying the thumbprints the server presented.
// Passwords appear in no error and no String output.
package vsphere
