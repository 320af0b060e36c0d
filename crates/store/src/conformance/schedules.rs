//! Conformance: schedules — one row per name; a fire is claimed by exactly
//! one caller (compare-and-set on the next fire), finished once, and not
//! claimed while paused or while another fire is in progress.

use super::*;
use crate::ScheduleRow;

fn row(name: &str, next: Micros) -> ScheduleRow {
    ScheduleRow {
        name: name.into(),
        body: "{}".into(),
        workflow: "x".into(),
        next_fire: Some(next),
        created_by: "token:a".into(),
        created_at: 1,
        ..Default::default()
    }
}

pub async fn schedules_are_kept_by_name(h: &dyn Harness) {
    let s = h.store().await;
    assert!(s.create_schedule(row("b", 10)).await.unwrap());
    assert!(s.create_schedule(row("a", 20)).await.unwrap());
    assert!(
        !s.create_schedule(row("a", 30)).await.unwrap(),
        "a name is taken once"
    );
    let all = s.schedules().await.unwrap();
    let names: Vec<(&str, Option<Micros>)> =
        all.iter().map(|r| (r.name.as_str(), r.next_fire)).collect();
    assert_eq!(names, [("a", Some(20)), ("b", Some(10))]);
    assert_eq!(s.schedule("a").await.unwrap().unwrap(), row("a", 20));
    assert!(s.set_schedule_paused("a", true, Some(25)).await.unwrap());
    let a = s.schedule("a").await.unwrap().unwrap();
    assert!(a.paused);
    assert_eq!(a.next_fire, Some(25));
    assert!(!s.set_schedule_paused("zz", true, None).await.unwrap());
    assert!(s.delete_schedule("a").await.unwrap());
    assert!(!s.delete_schedule("a").await.unwrap());
    assert_eq!(s.schedule("a").await.unwrap(), None);
}

pub async fn a_fire_is_claimed_once_and_finished_once(h: &dyn Harness) {
    let s = h.store().await;
    s.create_schedule(row("s", 100)).await.unwrap();
    // Only the due time that is next can be claimed.
    assert!(
        !s.claim_fire("s", 99, Some(200), "i1", Some(99))
            .await
            .unwrap()
    );
    let mut claims = tokio::task::JoinSet::new();
    for i in 0..6 {
        let s = s.clone();
        claims.spawn(async move {
            s.claim_fire("s", 100, Some(200), &format!("i{i}"), Some(100))
                .await
                .unwrap()
        });
    }
    let won = claims.join_all().await.into_iter().filter(|w| *w).count();
    assert_eq!(won, 1, "exactly one claim wins");
    let r = s.schedule("s").await.unwrap().unwrap();
    assert_eq!(
        (r.next_fire, r.firing_due, r.firing_key),
        (Some(200), Some(100), Some(100))
    );
    assert!(!r.firing_by.is_empty());
    // While it is in progress, the next fire cannot be claimed.
    assert!(!s.claim_fire("s", 200, Some(300), "i1", None).await.unwrap());
    assert!(!s.finish_fire("s", 99, "ok", "").await.unwrap());
    assert!(
        s.finish_fire("s", 100, "started wf-1", "wf-1")
            .await
            .unwrap()
    );
    assert!(!s.finish_fire("s", 100, "again", "").await.unwrap());
    let r = s.schedule("s").await.unwrap().unwrap();
    assert_eq!((r.firing_due, r.firing_by.as_str()), (None, ""));
    assert_eq!(
        (
            r.last_due,
            r.last_outcome.as_str(),
            r.last_workflow.as_str()
        ),
        (Some(100), "started wf-1", "wf-1")
    );
    // A paused schedule is not claimed; the last fire of a once-schedule
    // leaves no next fire.
    s.set_schedule_paused("s", true, Some(200)).await.unwrap();
    assert!(!s.claim_fire("s", 200, Some(300), "i1", None).await.unwrap());
    s.set_schedule_paused("s", false, Some(200)).await.unwrap();
    assert!(s.claim_fire("s", 200, None, "i1", Some(200)).await.unwrap());
    assert_eq!(s.schedule("s").await.unwrap().unwrap().next_fire, None);
    // A fire that made no workflow keeps the last one made.
    assert!(s.finish_fire("s", 200, "refused: stop", "").await.unwrap());
    let r = s.schedule("s").await.unwrap().unwrap();
    assert_eq!(
        (r.last_outcome.as_str(), r.last_workflow.as_str()),
        ("refused: stop", "wf-1")
    );
}
