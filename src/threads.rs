//! Running blocking file writes side by side: a batch of fsyncs in flight together
//! costs about what one costs on most disks, where one after another costs each in
//! turn. Used by the store's group writes and the outbox's batches.

/// `f` over `items` on up to `threads` threads (in chunks, in order), the results in
/// the order of `items`. An item whose thread panicked gets `stopped(item)`.
pub fn map_in_threads<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
    stopped: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if items.len() <= 1 || threads <= 1 {
        return items.iter().map(f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let (f, stopped) = (&f, &stopped);
    std::thread::scope(|scope| {
        let running: Vec<_> = items
            .chunks(per_thread)
            .map(|chunk| {
                (
                    chunk,
                    scope.spawn(move || chunk.iter().map(f).collect::<Vec<R>>()),
                )
            })
            .collect();
        running
            .into_iter()
            .flat_map(|(chunk, handle)| {
                handle
                    .join()
                    .unwrap_or_else(|_| chunk.iter().map(stopped).collect())
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_order_of_the_items() {
        let items: Vec<u32> = (0..37).collect();
        let doubled = map_in_threads(&items, 8, |n| n * 2, |_| u32::MAX);
        assert_eq!(doubled, items.iter().map(|n| n * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_thread_stops_only_its_own_items() {
        let items: Vec<u32> = (0..8).collect();
        let out = map_in_threads(
            &items,
            4,
            |n| {
                assert!(*n != 5, "test panic");
                Ok(*n)
            },
            |n| Err(*n),
        );
        assert_eq!(
            out,
            vec![Ok(0), Ok(1), Ok(2), Ok(3), Err(4), Err(5), Ok(6), Ok(7)]
        );
    }
}
