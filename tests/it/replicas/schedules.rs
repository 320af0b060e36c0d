//! Schedules on several replicas: each fire is claimed by exactly one.

use super::{Cluster, Setup};
use interlock_proto::v1;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fire_is_made_by_exactly_one_replica() {
    let Some(c) = Cluster::start(Setup::default()).await else {
        return;
    };
    let r0 = c.r(0).client.clone();
    r0.templates()
        .apply_template(v1::ApplyTemplateReq {
            text: "name: nap\nworkflow: {name: rep, blocks: [{jobs: [{name: sleep, args: {seconds: '0'}}]}]}"
                .into(),
        })
        .await
        .expect("template stored");
    // Several schedules due at the same instant, soon, created through
    // different replicas: every replica looks for due fires.
    let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(2);
    let names: Vec<String> = (0..6).map(|i| format!("soon-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        c.r(i % 3)
            .client
            .schedules()
            .create_schedule(v1::CreateScheduleReq {
                name: name.clone(),
                template: "nap".into(),
                at: Some(interlock_proto::pbjson_types::Timestamp {
                    seconds: at.as_secs() as i64,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await
            .expect("schedule created");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = r0
            .schedules()
            .list_schedules(v1::ListSchedulesReq {})
            .await
            .unwrap()
            .into_inner();
        if all.schedules.iter().all(|s| s.last_due.is_some()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all fired: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A moment for any second fire to show up, then count.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for name in &names {
        let fired = c
            .r(1)
            .client
            .raw()
            .list(v1::ListReq {
                labels: [("interlock.schedule".to_string(), name.clone())].into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .workflows;
        assert_eq!(fired.len(), 1, "{name}: {fired:?}");
    }
    let audit = c
        .r(2)
        .ctl
        .clone()
        .audit(v1::AuditReq {
            action: "schedule.fire".into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(audit.entries.len(), names.len(), "{:?}", audit.entries);
}
