//! The whole pipeline graph, assembled from the operators (see the crate docs for the picture).

use std::cell::RefCell;
use std::rc::Rc;

use timely::dataflow::operators::Probe;
use timely::dataflow::{ProbeHandle, StreamVec};
use timely::scheduling::SyncActivator;

use crate::operators::{BadEntry, CommitEpochs, Committer, DecodeEntries, FoldState};
use crate::{ActiveDevices, Entry, Epoch, Rows, StateTable};

/// Builds decode -> exchange + fold -> commit, with refused entries to a second committer, and
/// returns the probe whose frontier is the commit frontier of both sinks on every worker.
///
/// With `latest`, the fold also emits each epoch's newest fix per changed device
/// (`DEVICE_LATEST`), committed with the epoch's positions. `make_writer` builds this worker's
/// row committer (the database), `make_dead_letters` its
/// dead-letter committer. The probe passing epoch `e` means every row and every dead letter of
/// `e` (and of all earlier epochs) is durable: only then may the stream ids of `e` be acknowledged.
pub fn build<'scope, W, L>(
    entries: StreamVec<'scope, Epoch, Entry>,
    state: Rc<RefCell<StateTable>>,
    active: Rc<RefCell<ActiveDevices>>,
    latest: bool,
    make_writer: impl FnOnce(SyncActivator) -> W,
    make_dead_letters: impl FnOnce(SyncActivator) -> L,
) -> ProbeHandle<Epoch>
where
    W: Committer<Rows> + 'static,
    L: Committer<BadEntry> + 'static,
{
    let probe = ProbeHandle::new();
    let (positions, refused) = entries.decode_entries();
    positions
        .fold_state(state, active, latest)
        .commit_epochs("WriteRows", make_writer)
        .probe_with(&probe);
    refused
        .commit_epochs("DeadLetter", make_dead_letters)
        .probe_with(&probe);
    probe
}
