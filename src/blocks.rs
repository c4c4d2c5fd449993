//! Byte blocks that are written into, split off as shared [`Bytes`], and reused once every
//! split-off part is gone. A leaf.
//!
//! Two buffers work this way: the reader's, into which `XREADGROUP` replies are read (the entries'
//! fields are slices of a reply: no copy), and the writer's, into which rows are encoded for
//! `COPY` (each chunk is handed to tokio-postgres as it fills). A block is freed only when its
//! last part is dropped, so a buffer that simply allocated a fresh block whenever the current one
//! filled up put every reply and every chunk into newly mapped memory: a page fault per 4 KiB
//! written (the allocator hands idle memory back to the system after a few milliseconds). In a
//! profile that was a tenth of the processor's CPU.
//!
//! Instead the filled blocks are kept as spares, and a spare whose parts have all been dropped
//! (the usual case by the time it comes round again: a worker decodes a reply, and the
//! connection sends a chunk, within milliseconds) is taken back as it is, its pages still mapped.
//! A new block is allocated only when every spare is still in use, and at most [`SPARES`] are
//! kept, so a slow consumer costs fresh blocks, never unbounded memory.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Filled blocks kept for reuse.
pub const SPARES: usize = 4;

/// A buffer of reusable blocks (see the module doc).
pub struct Blocks {
    /// The block being written: the data not split off yet at its front.
    current: BytesMut,
    /// Filled blocks, oldest first, each a handle that keeps its allocation for reuse.
    spares: VecDeque<BytesMut>,
    size: usize,
    low_water: usize,
}

impl Blocks {
    /// Blocks of `size` bytes; a new block is taken when less than `low_water` is left.
    pub fn new(size: usize, low_water: usize) -> Self {
        Blocks {
            current: BytesMut::with_capacity(size),
            spares: VecDeque::with_capacity(SPARES + 1),
            size,
            low_water: low_water.min(size),
        }
    }

    /// The data written and not split off yet.
    pub fn filled(&self) -> &[u8] {
        &self.current
    }

    /// Splits off the first `at` bytes written (at most [`Blocks::filled`]'s length).
    pub fn split_to(&mut self, at: usize) -> Bytes {
        self.current.split_to(at.min(self.current.len())).freeze()
    }

    /// Splits off everything written.
    pub fn split(&mut self) -> Bytes {
        self.current.split().freeze()
    }

    /// The block to write into, with at least `low_water` bytes of room: the current one, or the
    /// next (the current one reclaimed, a free spare, else a new block) with the data not split
    /// off yet moved to its front. (Writing more than the room is fine: the block then grows.)
    pub fn writable(&mut self) -> &mut BytesMut {
        let len = self.current.len();
        if self.current.capacity() - len >= self.low_water {
            return &mut self.current;
        }
        // Data longer than half a block gets a block twice its length.
        let size = self.size.max(2 * len);
        if self.current.try_reclaim(size - len) {
            return &mut self.current;
        }
        let free = self
            .spares
            .iter_mut()
            .position(|spare| spare.try_reclaim(size));
        let mut next = free
            .and_then(|index| self.spares.remove(index))
            .unwrap_or_else(|| BytesMut::with_capacity(size));
        next.extend_from_slice(&self.current);
        let mut filled = std::mem::replace(&mut self.current, next);
        filled.clear();
        self.spares.push_back(filled);
        if self.spares.len() > SPARES {
            self.spares.pop_front();
        }
        &mut self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address of the allocation a part was split from.
    fn block_of(part: &Bytes) -> usize {
        part.as_ptr() as usize
    }

    #[test]
    fn a_block_is_reused_once_its_parts_are_dropped() {
        let mut blocks = Blocks::new(1024, 256);
        blocks.writable().extend_from_slice(&[1; 800]);
        let first = blocks.split();
        let address = block_of(&first);
        // 224 bytes left, under the low water: the next block is a new one (the first is in use)
        blocks.writable().extend_from_slice(&[2; 800]);
        let second = blocks.split();
        assert_ne!(block_of(&second), address);
        drop(first);
        // the first block's part is gone: it is taken back instead of allocating
        blocks.writable().extend_from_slice(&[3; 10]);
        assert_eq!(blocks.filled().as_ptr() as usize, address);
        assert_eq!(
            second.as_ref(),
            &[2; 800][..],
            "a part in use is never overwritten"
        );
    }

    #[test]
    fn data_not_split_off_moves_with_the_block() {
        let mut blocks = Blocks::new(64, 16);
        blocks.writable().extend_from_slice(b"0123456789");
        let kept = blocks.split_to(4);
        blocks.writable().extend_from_slice(&[b'x'; 44]);
        // 54 of 64 used after the split: the next writable() takes another block
        let partial: Vec<u8> = blocks.filled().to_vec();
        blocks.writable().extend_from_slice(b"!");
        assert_eq!(&blocks.filled()[..partial.len()], &partial[..]);
        assert_eq!(blocks.filled().last(), Some(&b'!'));
        assert_eq!(kept.as_ref(), b"0123");
    }

    #[test]
    fn long_data_gets_a_block_twice_its_length() {
        let mut blocks = Blocks::new(64, 16);
        blocks.writable().extend_from_slice(&[7; 60]);
        let writable = blocks.writable();
        assert!(writable.capacity() >= 120, "{}", writable.capacity());
        assert_eq!(blocks.filled(), &[7; 60][..]);
    }

    #[test]
    fn at_most_the_spares_are_kept() {
        let mut blocks = Blocks::new(64, 16);
        let mut parts = Vec::new();
        for _ in 0..SPARES + 3 {
            blocks.writable().extend_from_slice(&[1; 60]);
            parts.push(blocks.split());
        }
        assert!(blocks.spares.len() <= SPARES);
    }
}
