//! An epoch's records on one worker, kept in the containers they arrived in.
//!
//! Why not one `Vec`: the records of an epoch arrive in several containers (one per input batch
//! and exchange message), and epochs are then grouped for one transaction; gathering them into
//! one vector would copy every record twice on the way to the database. A batch moves the
//! containers instead, and the writer iterates over them.

/// Records of one or more epochs, in the containers they arrived in.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<D> {
    parts: Vec<Vec<D>>,
    len: usize,
}

impl<D> Default for Batch<D> {
    fn default() -> Self {
        Batch {
            parts: Vec::new(),
            len: 0,
        }
    }
}

impl<D> Batch<D> {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds a container of records (moved, not copied).
    pub fn push(&mut self, part: Vec<D>) {
        if !part.is_empty() {
            self.len += part.len();
            self.parts.push(part);
        }
    }

    /// Adds every container of `other`.
    pub fn append(&mut self, other: Batch<D>) {
        self.len += other.len;
        self.parts.extend(other.parts);
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = &D> + Clone {
        self.parts.iter().flatten()
    }
}

impl<D> From<Vec<D>> for Batch<D> {
    fn from(records: Vec<D>) -> Self {
        let mut batch = Batch::new();
        batch.push(records);
        batch
    }
}

impl<D> IntoIterator for Batch<D> {
    type Item = D;
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Vec<D>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.parts.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_kept_and_read_in_order() {
        let mut batch = Batch::from(vec![1, 2]);
        batch.push(Vec::new());
        batch.push(vec![3]);
        let mut more = Batch::new();
        more.push(vec![4, 5]);
        batch.append(more);
        assert_eq!(batch.len(), 5);
        assert_eq!(
            batch.iter().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(batch.into_iter().collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert!(Batch::<u8>::new().is_empty());
    }
}
