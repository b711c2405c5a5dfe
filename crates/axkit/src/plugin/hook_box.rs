//! The box a waiting hook's future lives in when it is too large for
//! malloc's fast per-thread cache: a block from the worker's spares
//! ([`SpareVecs`]) rather than a malloc and a free per request. A proxied
//! request's hook future is a few KiB (it holds the upstream exchange),
//! and such a malloc and free cost several hundred instructions where a
//! spare block costs a few dozen.
//!
//! The block is a vector's buffer, written through its raw pointer: the
//! future stays where it was written until it is dropped in place, so it
//! is pinned, and the vector is rebuilt from that pointer to go back to
//! the spares.

use std::future::Future;
use std::marker::PhantomData;
use std::mem::{align_of, size_of, MaybeUninit};
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context as TaskContext, Poll};

use super::spare::SpareVecs;
use super::Outcome;

/// A block's unit: its alignment is the most a pooled future may need.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Unit([u8; 16]);

/// A block's size, in units: what the largest hook futures the server
/// ships need (a proxied request's) with room to spare.
const BLOCK_UNITS: usize = 256;

/// The largest future malloc serves from its per-thread cache (glibc's
/// tcache: chunks of up to 1,032 bytes, 8 of them its own): smaller ones
/// are boxed as usual, which costs no more than a spare block.
const FAST_MALLOC: usize = 1024;

thread_local! {
    /// Spare blocks: as many as the hooks waiting at once on a busy
    /// worker may give back at a time, 256 KiB at most.
    static SPARE: SpareVecs<MaybeUninit<Unit>> = const { SpareVecs::new(64, BLOCK_UNITS) };
}

/// Whether a future of type `F` goes into a spare block: past malloc's
/// fast cache and within a block.
pub(super) const fn pooled<F>() -> bool {
    size_of::<F>() > FAST_MALLOC
        && size_of::<F>() <= BLOCK_UNITS * size_of::<Unit>()
        && align_of::<F>() <= align_of::<Unit>()
}

/// A future in a block of its own (see the module's doc).
pub(super) struct HookBox<'a> {
    /// The future, in the block's buffer.
    future: NonNull<dyn Future<Output = Outcome> + 'a>,
    /// The block's capacity, in units, to rebuild its vector.
    units: usize,
    /// Owns a future that may borrow for `'a`, as a `Box` of it would.
    _owns: PhantomData<Box<dyn Future<Output = Outcome> + 'a>>,
}

impl<'a> HookBox<'a> {
    /// `f` moved into a block. Only for a type that [`pooled`] accepts.
    pub(super) fn new<F: Future<Output = Outcome> + 'a>(f: F) -> Self {
        assert!(pooled::<F>());
        let mut block = SpareVecs::take(&SPARE, BLOCK_UNITS);
        if block.capacity() * size_of::<Unit>() < size_of::<F>() {
            block = Vec::with_capacity(BLOCK_UNITS);
        }
        let units = block.capacity();
        // The buffer outlives `block` (forgotten below) until `drop`
        // rebuilds it.
        let at = block.as_mut_ptr().cast::<F>();
        std::mem::forget(block);
        // SAFETY: `at` is aligned for `F` (a unit's alignment is at least
        // `F`'s: `pooled`) and has room for it (checked above), and nothing
        // else uses the buffer.
        unsafe { at.write(f) };
        let future: *mut (dyn Future<Output = Outcome> + 'a) = at;
        HookBox {
            // SAFETY: a vector's buffer of non-zero capacity is not null.
            future: unsafe { NonNull::new_unchecked(future) },
            units,
            _owns: PhantomData,
        }
    }
}

impl Future for HookBox<'_> {
    type Output = Outcome;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Outcome> {
        // SAFETY: the future is valid until `drop`, borrowed through
        // `self` only, and never moves out of its block: pinned.
        let future = unsafe { Pin::new_unchecked(&mut *self.get_mut().future.as_ptr()) };
        future.poll(cx)
    }
}

impl Drop for HookBox<'_> {
    fn drop(&mut self) {
        /// Gives the block back even when the future's drop panics.
        struct Block(*mut MaybeUninit<Unit>, usize);
        impl Drop for Block {
            fn drop(&mut self) {
                // SAFETY: the buffer of a vector of that capacity, which
                // `HookBox::new` forgot, and nothing in it to drop.
                let block = unsafe { Vec::from_raw_parts(self.0, 0, self.1) };
                SpareVecs::give(&SPARE, block);
            }
        }
        let _block = Block(self.future.as_ptr().cast(), self.units);
        // SAFETY: the future was written by `new` and is dropped once.
        unsafe { std::ptr::drop_in_place(self.future.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A future of `N` bytes that waits once, then yields `Done`, and
    /// counts its drops.
    struct Big<const N: usize> {
        pad: [u8; N],
        polled: bool,
        drops: Rc<Cell<u32>>,
    }

    impl<const N: usize> Future for Big<N> {
        type Output = Outcome;
        fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Outcome> {
            if std::mem::replace(&mut self.polled, true) {
                assert!(self.pad.iter().all(|b| *b == 7));
                return Poll::Ready(Outcome::Done);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    impl<const N: usize> Drop for Big<N> {
        fn drop(&mut self) {
            self.drops.set(self.drops.get() + 1);
        }
    }

    fn big<const N: usize>(drops: &Rc<Cell<u32>>) -> Big<N> {
        Big {
            pad: [7; N],
            polled: false,
            drops: drops.clone(),
        }
    }

    #[test]
    fn which_futures_are_pooled() {
        assert!(!pooled::<Big<16>>());
        assert!(pooled::<Big<2000>>());
        assert!(!pooled::<Big<5000>>());
        #[repr(align(64))]
        struct Aligned {
            _pad: [u8; 2048],
        }
        assert!(!pooled::<Aligned>());
    }

    #[test]
    fn a_pooled_future_runs_and_is_dropped_once_its_block_reused() {
        let drops = Rc::new(Cell::new(0));
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        let mut first = HookBox::new(big::<2000>(&drops));
        assert_eq!(Pin::new(&mut first).poll(&mut cx), Poll::Pending);
        assert_eq!(
            Pin::new(&mut first).poll(&mut cx),
            Poll::Ready(Outcome::Done)
        );
        let block = first.future.as_ptr().cast::<u8>();
        drop(first);
        assert_eq!(drops.get(), 1);
        // The next takes the block the first gave back; one dropped
        // before it is polled is dropped too.
        let second = HookBox::new(big::<3000>(&drops));
        assert_eq!(second.future.as_ptr().cast::<u8>(), block);
        drop(second);
        assert_eq!(drops.get(), 2);
    }

    #[test]
    fn a_block_goes_back_when_the_future_panics_as_it_drops() {
        struct Bomb {
            _pad: [u8; 1500],
        }
        impl Future for Bomb {
            type Output = Outcome;
            fn poll(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Outcome> {
                Poll::Ready(Outcome::Ok)
            }
        }
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("boom");
            }
        }
        let boxed = HookBox::new(Bomb { _pad: [0; 1500] });
        let block = boxed.future.as_ptr().cast::<u8>();
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(boxed)));
        assert!(dropped.is_err());
        let drops = Rc::new(Cell::new(0));
        let next = HookBox::new(big::<2000>(&drops));
        assert_eq!(next.future.as_ptr().cast::<u8>(), block);
    }
}
