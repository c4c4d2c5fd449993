//! What the fold hands to the row sink: positions, and each epoch's newest fixes per device.

use crate::{Batch, LatestFix, Position};

/// One container's worth of writes for the row sink.
///
/// Positions pass through the fold in the containers they arrived in (moved, not copied); the
/// newest fixes of an epoch follow once the epoch is complete on the worker. Both are stamped
/// with the epoch, so the sink's commit of an epoch carries its positions and its fixes together:
/// one transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum Rows {
    /// Positions for `positions`.
    Positions(Vec<Position>),
    /// Fixes for `device_latest`.
    Latest(Vec<LatestFix>),
}

impl Rows {
    /// The positions, if these are positions.
    pub fn positions(&self) -> &[Position] {
        match self {
            Rows::Positions(positions) => positions,
            Rows::Latest(_) => &[],
        }
    }

    /// The fixes, if these are fixes.
    pub fn latest(&self) -> &[LatestFix] {
        match self {
            Rows::Positions(_) => &[],
            Rows::Latest(fixes) => fixes,
        }
    }
}

impl Batch<Rows> {
    /// The positions, in order.
    pub fn positions(&self) -> impl Iterator<Item = &Position> + Clone {
        self.iter().flat_map(Rows::positions)
    }

    /// The fixes.
    pub fn latest(&self) -> impl Iterator<Item = &LatestFix> + Clone {
        self.iter().flat_map(Rows::latest)
    }
}
