//! The domain's vocabulary: ids and the states a record can be in.
//!
//! They live here, not in `store`, because they are what the chat rules are
//! written in; a storage backend only maps them to and from its columns.
//! Ids are newtypes so a user id can never be passed where a conversation id
//! belongs, and so the hub's tables can refuse an unknown id instead of
//! indexing with it.

use std::fmt;

/// A user account. Assigned by storage; also the primary key there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct UserId(pub u32);

/// A conversation: a room, a group or a direct one. Assigned like [`UserId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ConvId(pub u32);

/// A message's place in its conversation: 1, 2, 3, ... without gaps. Zero
/// stands before the first message (an empty conversation's last seq, a
/// cursor that has seen nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Seq(pub u64);

impl Seq {
    pub const ZERO: Seq = Seq(0);
    /// Past any real seq: "no upper bound" for HISTORY and SEARCH.
    pub const MAX: Seq = Seq(u64::MAX);

    pub fn next(self) -> Seq {
        Seq(self.0.saturating_add(1))
    }

    pub fn prev(self) -> Seq {
        Seq(self.0.saturating_sub(1))
    }
}

impl std::str::FromStr for Seq {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Seq, Self::Err> {
        s.parse().map(Seq)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Dense, 0-based ids index the hub's tables.
pub trait TableId: Copy {
    fn index(self) -> usize;
    fn from_index(i: usize) -> Self;
}

macro_rules! table_id {
    ($t:ident) => {
        impl TableId for $t {
            fn index(self) -> usize {
                self.0 as usize
            }
            fn from_index(i: usize) -> Self {
                $t(u32::try_from(i).unwrap_or(u32::MAX))
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}
table_id!(UserId);
table_id!(ConvId);

/// A state stored as a small integer code: the enum, and `from_code`, which
/// reads a code this build does not know as `unknown`.
macro_rules! coded_enum {
    ($(#[$m:meta])* $t:ident { $($(#[$vm:meta])* $v:ident = $n:literal,)+ } unknown: $fb:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $t {
            $($(#[$vm])* $v = $n,)+
        }

        impl $t {
            pub fn from_code(v: i64) -> Self {
                match v {
                    $($n => $t::$v,)+
                    _ => $t::$fb,
                }
            }
        }
    };
}

coded_enum!(
    ConvKind {
        /// Anyone may JOIN.
        Public = 0,
        /// Invite-only; admins ADD and KICK.
        Group = 1,
        /// Two friends.
        Direct = 2,
    }
    unknown: Public
);

coded_enum!(
    RequestState {
        Pending = 0,
        Accepted = 1,
        Rejected = 2,
    }
    unknown: Pending
);

coded_enum!(
    /// What an admin did, as the audit log records it.
    AuditAction {
        Kick = 0,
        Ban = 1,
        Unban = 2,
        Mute = 3,
        Unmute = 4,
        Op = 5,
        Deop = 6,
        Topic = 7,
        /// An admin deleting someone else's message.
        Delete = 8,
    }
    unknown: Kick
);

coded_enum!(
    MsgState {
        Sent = 0,
        Edited = 1,
        /// A tombstone: the text is gone.
        Deleted = 2,
    }
    unknown: Sent
);

/// A table indexed by a dense id. Lookups return `Option`, so an id that a
/// late answer or another node hands the hub can never panic the loop; a
/// hole (an id storage skipped) is simply absent.
#[derive(Debug)]
pub struct Table<K, V> {
    rows: Vec<Option<V>>,
    _key: std::marker::PhantomData<K>,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            rows: Vec::new(),
            _key: std::marker::PhantomData,
        }
    }
}

impl<K: TableId, V> Table<K, V> {
    pub fn get(&self, id: K) -> Option<&V> {
        self.rows.get(id.index()).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, id: K) -> Option<&mut V> {
        self.rows.get_mut(id.index()).and_then(Option::as_mut)
    }

    /// The id the next [`Table::push`] will get.
    pub fn next_id(&self) -> K {
        K::from_index(self.rows.len())
    }

    pub fn push(&mut self, v: V) -> K {
        let id = self.next_id();
        self.rows.push(Some(v));
        id
    }

    /// Puts `v` at `id`, leaving holes before it if needed.
    pub fn insert(&mut self, id: K, v: V) {
        let i = id.index();
        if self.rows.len() <= i {
            self.rows.resize_with(i + 1, || None);
        }
        self.rows[i] = Some(v);
    }

    pub fn iter(&self) -> impl Iterator<Item = (K, &V)> {
        self.rows
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (K::from_index(i), v)))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.rows.iter().flatten()
    }
}
