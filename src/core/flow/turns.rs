//! Running together and taking turns on one thread: a queue batch's messages run at once
//! ([`together`]) and their bulky parts one at a time ([`Turns`], for
//! [`Bulk`](super::ports::Bulk)). A Worker isolate runs a single thread, so these are a list of
//! futures, a flag and a list of wakers — smaller in the WebAssembly than `join_all` and an
//! async mutex built for threads (no atomics, no slab, no task queue).

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Poll, Waker};

/// Runs every future at once until all are done (their outputs dropped). Each wake polls the
/// unfinished ones again: cheap for a batch's few messages.
pub async fn together<'a>(mut futures: Vec<Pin<Box<dyn Future<Output = ()> + 'a>>>) {
    poll_fn(|cx| {
        futures.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futures.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Whose turn it is: at most one [`Turn`] at a time.
#[derive(Debug, Default)]
pub struct Turns {
    busy: Cell<bool>,
    waiting: RefCell<Vec<Waker>>,
}

/// The turn, held until dropped.
#[derive(Debug)]
pub struct Turn<'a>(&'a Turns);

impl Turns {
    /// Waits until no one else holds the turn, then holds it.
    pub async fn take(&self) -> Turn<'_> {
        poll_fn(|cx| {
            if self.busy.get() {
                // Once per waker: `together` polls every waiting message on each wake, and all of
                // them share one waker.
                let mut waiting = self.waiting.borrow_mut();
                if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    waiting.push(cx.waker().clone());
                }
                Poll::Pending
            } else {
                self.busy.set(true);
                Poll::Ready(())
            }
        })
        .await;
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    /// Gives the turn back and wakes whoever waits: the first of them polled takes it, the
    /// others wait again (a batch has at most a few).
    fn drop(&mut self) {
        self.0.busy.set(false);
        let waiting = self.0.waiting.take();
        for w in waiting {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use futures::FutureExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake};

    use super::*;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn together_runs_every_future_to_its_end_whatever_the_order_they_finish_in() {
        let turns = Turns::default();
        let done = RefCell::new(Vec::new());
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let gate = turns.take();
        let mut gate = pin!(gate);
        let Poll::Ready(held) = gate.as_mut().poll(&mut cx) else {
            panic!("a free turn is taken at once");
        };
        // `a` waits for the turn held here; `b` finishes at once.
        let a = async {
            let _t = turns.take().await;
            done.borrow_mut().push("a");
        };
        let b = async {
            done.borrow_mut().push("b");
        };
        let mut all = pin!(together(vec![Box::pin(a), Box::pin(b)]));
        assert!(all.as_mut().poll(&mut cx).is_pending());
        assert_eq!(*done.borrow(), ["b"]);
        drop(held);
        assert!(all.as_mut().poll(&mut cx).is_ready());
        assert_eq!(*done.borrow(), ["b", "a"]);
        assert!(together(Vec::new()).now_or_never().is_some());
    }

    #[test]
    fn one_turn_at_a_time_and_a_waiter_is_woken_when_it_is_given_back() {
        let turns = Turns::default();
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);

        let mut first = pin!(turns.take());
        let Poll::Ready(held) = first.as_mut().poll(&mut cx) else {
            panic!("a free turn is taken at once");
        };
        let mut second = pin!(turns.take());
        let mut third = pin!(turns.take());
        let other = Arc::new(Count(AtomicUsize::new(0)));
        let other_waker = Waker::from(other.clone());
        let mut other_cx = Context::from_waker(&other_waker);
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert!(third.as_mut().poll(&mut other_cx).is_pending());
        // Polled again while waiting (as `together` does on every wake): no second entry.
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert_eq!(turns.waiting.borrow().len(), 2);
        assert_eq!(woken.0.load(Ordering::SeqCst), 0);

        drop(held);
        assert_eq!(
            woken.0.load(Ordering::SeqCst) + other.0.load(Ordering::SeqCst),
            2,
            "both waiters woken"
        );
        assert_eq!(other.0.load(Ordering::SeqCst), 1);
        let Poll::Ready(next) = second.as_mut().poll(&mut cx) else {
            panic!("the turn given back goes to the next waiter polled");
        };
        // The other one waits again, and gets it once that turn ends.
        assert!(third.as_mut().poll(&mut other_cx).is_pending());
        drop(next);
        assert!(third.as_mut().poll(&mut other_cx).is_ready());
    }
}
