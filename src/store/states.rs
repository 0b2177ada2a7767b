//! The states of one key's limits, sized for the common case.
//!
//! Most policies give a key one limit, so one state is held inline; a key
//! with several keeps them in a vector. An enum of the two is no bigger
//! than a state: the state's refill time never holds zero, and that spare
//! value tells the two apart. That saves each key the 8 bytes a separate
//! length or tag would take.

use std::ops::{Deref, DerefMut};

use crate::limiter::LimitState;

/// The states of one key's limits, in the order of the limits.
#[derive(Clone, Debug)]
pub enum States {
    /// Exactly one state.
    One(LimitState),
    /// Any other number of states.
    Many(Vec<LimitState>),
}

impl States {
    /// No states.
    pub const fn new() -> Self {
        Self::Many(Vec::new())
    }

    /// Adds a state after the others.
    pub fn push(&mut self, state: LimitState) {
        *self = match std::mem::take(self) {
            Self::Many(states) if states.is_empty() => Self::One(state),
            Self::One(first) => Self::Many(vec![first, state]),
            Self::Many(mut states) => {
                states.push(state);
                Self::Many(states)
            }
        };
    }

    /// Bytes these states hold outside their slot: a vector's, with the
    /// allocator's header.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Self::Many(states) if states.capacity() > 0 => {
                states.capacity() * std::mem::size_of::<LimitState>() + 16
            }
            _ => 0,
        }
    }

    /// The states, as a vector.
    pub fn into_vec(self) -> Vec<LimitState> {
        match self {
            Self::One(state) => vec![state],
            Self::Many(states) => states,
        }
    }
}

impl Default for States {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for States {
    type Target = [LimitState];

    fn deref(&self) -> &[LimitState] {
        match self {
            Self::One(state) => std::slice::from_ref(state),
            Self::Many(states) => states,
        }
    }
}

impl DerefMut for States {
    fn deref_mut(&mut self) -> &mut [LimitState] {
        match self {
            Self::One(state) => std::slice::from_mut(state),
            Self::Many(states) => states,
        }
    }
}

impl FromIterator<LimitState> for States {
    fn from_iter<I: IntoIterator<Item = LimitState>>(iter: I) -> Self {
        let mut states = Self::new();
        for state in iter {
            states.push(state);
        }
        states
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_no_bigger_than_one_state() {
        assert_eq!(std::mem::size_of::<States>(), std::mem::size_of::<LimitState>());
        assert_eq!(std::mem::size_of::<States>(), 40);
    }

    #[test]
    fn holds_none_one_or_several_in_order() {
        let spec = |i: u16| LimitState::for_spec(i);
        let mut states = States::new();
        assert!(states.is_empty());
        states.push(spec(1));
        assert!(matches!(states, States::One(_)));
        states.push(spec(2));
        states.push(spec(3));
        let order: Vec<u16> = states.iter().map(|s| s.counter().tag()).collect();
        assert_eq!(order, [1, 2, 3]);
        states[1] = spec(9);
        let collected: States = states.into_vec().into_iter().collect();
        let order: Vec<u16> = collected.iter().map(|s| s.counter().tag()).collect();
        assert_eq!(order, [1, 9, 3]);
        let one: States = [spec(7)].into_iter().collect();
        assert_eq!(one.len(), 1);
        assert_eq!(one.into_vec().len(), 1);
    }
}
