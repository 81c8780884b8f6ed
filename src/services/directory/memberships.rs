//! Each user's tracked rooms, as sorted room keys. Most users are in one or two rooms:
//! those lists live inline in 8 bytes per user; longer ones in a pool. (A hash map of
//! vectors cost about 60 bytes per user at a million users.)

/// An unused inline half; a room key is never this.
const NONE: u32 = u32::MAX;
/// The first half of a pooled list's slot; the second is its index in the pool.
const POOLED: u32 = u32::MAX - 1;

#[derive(Default)]
pub struct UserRooms {
    slots: Vec<[u32; 2]>,
    pool: Vec<Vec<u32>>,
    free: Vec<u32>,
}

impl UserRooms {
    /// User `id`'s room keys, sorted.
    pub fn get(&self, id: u32) -> &[u32] {
        match self.slots.get(id as usize) {
            None => &[],
            Some([POOLED, at]) => self.pool.get(*at as usize).map_or(&[], Vec::as_slice),
            Some(slot) => {
                let len = slot.iter().take_while(|key| **key != NONE).count();
                &slot[..len]
            }
        }
    }

    /// Adds `key` to user `id`'s rooms; false if it was there.
    pub fn insert(&mut self, id: u32, key: u32) -> bool {
        debug_assert!(key < POOLED, "room keys are dense");
        let mut rooms = self.get(id).to_vec();
        let Err(at) = rooms.binary_search(&key) else { return false };
        rooms.insert(at, key);
        self.set(id, rooms);
        true
    }

    /// Removes `key` from user `id`'s rooms; false if it was not there.
    pub fn remove(&mut self, id: u32, key: u32) -> bool {
        let mut rooms = self.get(id).to_vec();
        let Ok(at) = rooms.binary_search(&key) else { return false };
        rooms.remove(at);
        self.set(id, rooms);
        true
    }

    /// Removes and returns all of user `id`'s rooms.
    pub fn take(&mut self, id: u32) -> Vec<u32> {
        let rooms = self.get(id).to_vec();
        self.set(id, Vec::new());
        rooms
    }

    fn set(&mut self, id: u32, rooms: Vec<u32>) {
        let index = id as usize;
        if index >= self.slots.len() {
            if rooms.is_empty() {
                return;
            }
            self.slots.resize(index + 1, [NONE, NONE]);
        }
        let pooled = match self.slots[index] {
            [POOLED, at] => Some(at),
            _ => None,
        };
        if rooms.len() <= 2 {
            let mut slot = [NONE, NONE];
            slot[..rooms.len()].copy_from_slice(&rooms);
            self.slots[index] = slot;
            if let Some(at) = pooled {
                self.pool[at as usize] = Vec::new();
                self.free.push(at);
            }
        } else if let Some(at) = pooled {
            self.pool[at as usize] = rooms;
        } else {
            let at = match self.free.pop() {
                Some(at) => {
                    self.pool[at as usize] = rooms;
                    at
                }
                None => {
                    self.pool.push(rooms);
                    (self.pool.len() - 1) as u32
                }
            };
            self.slots[index] = [POOLED, at];
        }
    }

    pub fn shrink(&mut self) {
        self.slots.shrink_to_fit();
        for rooms in &mut self.pool {
            rooms.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_move_between_inline_and_pool() {
        let mut rooms = UserRooms::default();
        assert_eq!(rooms.get(7), &[] as &[u32]);
        assert!(rooms.insert(7, 5));
        assert!(!rooms.insert(7, 5));
        assert!(rooms.insert(7, 2));
        assert_eq!(rooms.get(7), &[2, 5]);
        assert!(rooms.insert(7, 9));
        assert!(rooms.insert(3, 1));
        assert_eq!((rooms.get(7), rooms.get(3)), (&[2, 5, 9][..], &[1][..]));
        assert!(rooms.remove(7, 5));
        assert!(!rooms.remove(7, 5));
        assert_eq!(rooms.get(7), &[2, 9]);
        assert_eq!(rooms.free, vec![0], "the pooled list is released");
        for key in [4, 6, 8] {
            rooms.insert(3, key);
        }
        assert_eq!(rooms.get(3), &[1, 4, 6, 8]);
        assert_eq!(rooms.pool.len(), 1, "the released list is reused");
        assert_eq!(rooms.take(3), vec![1, 4, 6, 8]);
        assert_eq!(rooms.get(3), &[] as &[u32]);
        assert!(!rooms.remove(100, 1));
    }
}
