//! Running a whole forward pass on one of rayon's pool threads.
//!
//! The fast CPU paths thread each large op with rayon. Called from a thread outside the pool
//! (`main`), every parallel op hands its work to the pool and puts the caller to sleep until it is
//! done: two context switches per op, a dozen ops per decoded token. Called from a pool thread,
//! the same op runs part of its work on that thread and shares the rest by work stealing, with
//! no sleep. So each model's forward pass enters the pool once, here.

/// `f()`, run on a thread of rayon's global pool (directly when already on one). The result and
/// any panic come back to the caller.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    // From outside the pool, `join` runs both closures on a pool thread and waits once.
    rayon::join(f, || ()).0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::on_pool;

    #[test]
    fn runs_on_a_pool_thread_and_returns_the_result() {
        assert!(rayon::current_thread_index().is_none());
        let (inside, value) = on_pool(|| (rayon::current_thread_index().is_some(), 41 + 1));
        assert!(inside);
        assert_eq!(value, 42);
        // Nested: stays on the same thread.
        let nested = on_pool(|| {
            let here = rayon::current_thread_index();
            on_pool(|| rayon::current_thread_index() == here)
        });
        assert!(nested);
    }
}
