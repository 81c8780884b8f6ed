//! Sets of dense user ids, kept compact: most lexemes belong to a single user (unique
//! localparts), so a set is a 4-byte `Slot` holding either that user or the index of a
//! roaring bitmap in a shared pool.

use roaring::RoaringBitmap;

/// Empty, one user inline, or a bitmap of the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slot(u32);

const SINGLE: u32 = 1 << 31;

impl Slot {
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The bitmaps slots refer to, with reuse of freed ones.
#[derive(Default)]
pub struct Pool {
    bitmaps: Vec<RoaringBitmap>,
    free: Vec<u32>,
}

impl Pool {
    pub fn insert(&mut self, slot: &mut Slot, id: u32) {
        debug_assert!(id < SINGLE, "dense ids stay below 2^31");
        match slot.0 {
            0 => slot.0 = SINGLE | id,
            single if single & SINGLE != 0 => {
                let existing = single & !SINGLE;
                if existing != id {
                    let bitmap = RoaringBitmap::from_iter([existing, id]);
                    *slot = self.allocate(bitmap);
                }
            }
            index => {
                self.bitmaps[index as usize - 1].insert(id);
            }
        }
    }

    pub fn remove(&mut self, slot: &mut Slot, id: u32) {
        match slot.0 {
            0 => {}
            single if single & SINGLE != 0 => {
                if single & !SINGLE == id {
                    slot.0 = 0;
                }
            }
            index => {
                let bitmap = &mut self.bitmaps[index as usize - 1];
                bitmap.remove(id);
                if bitmap.len() <= 1 {
                    let last = bitmap.min();
                    *bitmap = RoaringBitmap::new();
                    self.free.push(index - 1);
                    slot.0 = last.map_or(0, |id| SINGLE | id);
                }
            }
        }
    }

    fn allocate(&mut self, bitmap: RoaringBitmap) -> Slot {
        match self.free.pop() {
            Some(index) => {
                self.bitmaps[index as usize] = bitmap;
                Slot(index + 1)
            }
            None => {
                self.bitmaps.push(bitmap);
                Slot(self.bitmaps.len() as u32)
            }
        }
    }

    pub fn contains(&self, slot: Slot, id: u32) -> bool {
        match slot.0 {
            0 => false,
            single if single & SINGLE != 0 => single & !SINGLE == id,
            index => self.bitmaps[index as usize - 1].contains(id),
        }
    }

    /// The single user of a one-user slot.
    pub fn single(&self, slot: Slot) -> Option<u32> {
        (slot.0 & SINGLE != 0).then_some(slot.0 & !SINGLE)
    }

    /// The bitmap of a slot holding several users.
    pub fn bitmap(&self, slot: Slot) -> Option<&RoaringBitmap> {
        (slot.0 != 0 && slot.0 & SINGLE == 0).then(|| &self.bitmaps[slot.0 as usize - 1])
    }

    pub fn to_bitmap(&self, slot: Slot) -> RoaringBitmap {
        match (self.single(slot), self.bitmap(slot)) {
            (Some(id), _) => RoaringBitmap::from_iter([id]),
            (_, Some(bitmap)) => bitmap.clone(),
            _ => RoaringBitmap::new(),
        }
    }
}

/// Counts, per user, how many of the sets added contain them, up to three: the union
/// (`at_least[0]`), users in two or more (`at_least[1]`) and in three or more. Single
/// users are gathered and sorted once, far cheaper than thousands of one-element unions.
#[derive(Default)]
pub struct Layers {
    pub at_least: [RoaringBitmap; 3],
    singles: Vec<u32>,
}

impl Layers {
    pub fn add(&mut self, pool: &Pool, slot: Slot) {
        if let Some(id) = pool.single(slot) {
            self.singles.push(id);
        } else if let Some(bitmap) = pool.bitmap(slot) {
            self.add_bitmap(bitmap);
        }
    }

    pub fn add_bitmap(&mut self, bitmap: &RoaringBitmap) {
        let [one, two, three] = &mut self.at_least;
        *three |= &*two & bitmap;
        *two |= &*one & bitmap;
        *one |= bitmap;
    }

    /// Folds the gathered single users in.
    pub fn finish(mut self) -> [RoaringBitmap; 3] {
        self.singles.sort_unstable();
        let mut run = 0;
        let mut layers: [Vec<u32>; 3] = Default::default();
        for (i, id) in self.singles.iter().enumerate() {
            run = if i > 0 && self.singles[i - 1] == *id { run + 1 } else { 0 };
            if run < 3 {
                layers[run].push(*id);
            }
        }
        for layer in layers {
            let bitmap = RoaringBitmap::from_sorted_iter(layer).unwrap_or_default();
            self.add_bitmap(&bitmap);
        }
        self.at_least
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_move_between_inline_and_bitmaps() {
        let mut pool = Pool::default();
        let mut slot = Slot::default();
        pool.insert(&mut slot, 7);
        assert_eq!(pool.single(slot), Some(7));
        pool.insert(&mut slot, 9);
        assert!(pool.contains(slot, 7) && pool.contains(slot, 9));
        pool.remove(&mut slot, 7);
        assert_eq!(pool.single(slot), Some(9));
        pool.remove(&mut slot, 9);
        assert!(slot.is_empty());
        let mut other = Slot::default();
        pool.insert(&mut other, 1);
        pool.insert(&mut other, 2);
        assert_eq!(pool.bitmaps.len(), 1, "the freed bitmap is reused");
    }

    #[test]
    fn layers_count_memberships() {
        let mut pool = Pool::default();
        let (mut a, mut b, mut c) = (Slot::default(), Slot::default(), Slot::default());
        for id in [1, 2, 3] {
            pool.insert(&mut a, id);
        }
        pool.insert(&mut b, 2);
        pool.insert(&mut c, 2);
        let mut d = Slot::default();
        pool.insert(&mut d, 3);
        let mut layers = Layers::default();
        for slot in [a, b, c, d] {
            layers.add(&pool, slot);
        }
        let [one, two, three] = layers.finish();
        assert_eq!(one.iter().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(two.iter().collect::<Vec<_>>(), [2, 3]);
        assert_eq!(three.iter().collect::<Vec<_>>(), [2]);
    }
}
