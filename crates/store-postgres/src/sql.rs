//! Queries through each connection's statement cache: a statement is
//! parsed and planned once per connection, then each use is a single round
//! trip (tokio-postgres otherwise prepares an unnamed statement, an extra
//! round trip, on every call with SQL text).

use deadpool_postgres::GenericClient;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

pub type PgResult<T> = Result<T, tokio_postgres::Error>;

/// A pooled connection inside the writer's transaction: the writer opens
/// and ends the transaction itself, so that both go out together with the
/// statements next to them (see `writer`).
pub type Tx = deadpool_postgres::Client;
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub async fn execute<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> PgResult<u64> {
    let st = c.prepare_cached(sql).await?;
    c.execute(&st, params).await
}

pub async fn query<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> PgResult<Vec<Row>> {
    let st = c.prepare_cached(sql).await?;
    c.query(&st, params).await
}

pub async fn query_one<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> PgResult<Row> {
    let st = c.prepare_cached(sql).await?;
    c.query_one(&st, params).await
}

pub async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> PgResult<Option<Row>> {
    let st = c.prepare_cached(sql).await?;
    c.query_opt(&st, params).await
}

/// A statement's future, boxed so that different statements can be
/// pipelined together.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = PgResult<T>> + Send + 'a>>;

/// Runs `futs` concurrently on one connection and waits for all of them
/// (an error does not cut the others short). They are first polled in
/// list order, and a statement whose plan is cached is sent on its first
/// poll, so the database runs them in list order, in one round trip. What
/// must hold for that: each future's first statement is already in the
/// connection's cache; a statement prepared on the way goes out later
/// (still after every earlier one in the list, but maybe after later ones).
/// Hand-written because `join_all` gives no polling order past 30 futures;
/// after the first round they are driven as a `FuturesUnordered` (a wake
/// polls only the future it is for, so thousands of statements, a clone's
/// carried jobs, cost no quadratic re-polling).
pub async fn in_order<T>(mut futs: Vec<Pending<'_, T>>) -> Vec<PgResult<T>> {
    use futures::StreamExt;
    let mut out: Vec<Option<PgResult<T>>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if let Poll::Ready(r) = f.as_mut().poll(cx) {
                *o = Some(r);
            }
        }
        Poll::Ready(())
    })
    .await;
    let mut rest: futures::stream::FuturesUnordered<_> = futs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| out[*i].is_none())
        .map(|(i, f)| async move { (i, f.await) })
        .collect();
    while let Some((i, r)) = rest.next().await {
        out[i] = Some(r);
    }
    out.into_iter()
        .map(|o| o.expect("every future ran to completion"))
        .collect()
}

/// [`in_order`], failing with the first error.
pub async fn all_in_order<T>(futs: Vec<Pending<'_, T>>) -> PgResult<Vec<T>> {
    in_order(futs).await.into_iter().collect()
}

/// Runs `futs` one after another, stopping after the first error.
pub async fn one_by_one<T>(futs: Vec<Pending<'_, T>>) -> Vec<PgResult<T>> {
    let mut out = Vec::with_capacity(futs.len());
    for f in futs {
        let r = f.await;
        let failed = r.is_err();
        out.push(r);
        if failed {
            break;
        }
    }
    out
}

/// [`in_order`] when `together`, else [`one_by_one`].
pub async fn run<T>(futs: Vec<Pending<'_, T>>, together: bool) -> Vec<PgResult<T>> {
    if together {
        in_order(futs).await
    } else {
        one_by_one(futs).await
    }
}
