//! Conformance: templates — revisions numbered 1, 2, 3 per name, never
//! changed; an unchanged put adds nothing; concurrent puts get distinct
//! revisions; disabling is kept across new revisions.

use super::*;
use crate::{TemplateDisabled, TemplatePut, TemplateRevision};

fn rev(name: &str, body: &str, at: Micros) -> TemplateRevision {
    TemplateRevision {
        name: name.into(),
        revision: 0,
        body: body.into(),
        content_hash: format!("hash of {body}"),
        created_by: "token:a".into(),
        created_at: at,
    }
}

pub async fn template_revisions_are_kept_and_never_changed(h: &dyn Harness) {
    let s = h.store().await;
    assert_eq!(s.template("t", None).await.unwrap(), None);
    assert!(s.templates().await.unwrap().is_empty());
    assert_eq!(
        s.put_template(rev("t", "one", 10)).await.unwrap(),
        TemplatePut::Created(1)
    );
    assert_eq!(
        s.put_template(rev("t", "one", 11)).await.unwrap(),
        TemplatePut::Unchanged(1)
    );
    assert_eq!(
        s.put_template(rev("t", "two", 12)).await.unwrap(),
        TemplatePut::Created(2)
    );
    // Back to the first content: a new revision, not the old one.
    assert_eq!(
        s.put_template(rev("t", "one", 13)).await.unwrap(),
        TemplatePut::Created(3)
    );
    assert_eq!(
        s.put_template(rev("u", "x", 14)).await.unwrap(),
        TemplatePut::Created(1)
    );

    let latest = s.template("t", None).await.unwrap().unwrap();
    assert_eq!((latest.revision.revision, latest.latest), (3, 3));
    assert_eq!(latest.revision.body, "one");
    assert_eq!(latest.revision.created_at, 13);
    assert_eq!(latest.revision.created_by, "token:a");
    let first = s.template("t", Some(2)).await.unwrap().unwrap();
    assert_eq!((first.revision.body.as_str(), first.latest), ("two", 3));
    assert_eq!(s.template("t", Some(4)).await.unwrap(), None);
    assert_eq!(s.template("t", Some(0)).await.unwrap(), None);

    let revs = s.template_revisions("t").await.unwrap();
    let bodies: Vec<(u32, &str)> = revs.iter().map(|r| (r.revision, r.body.as_str())).collect();
    assert_eq!(bodies, [(1, "one"), (2, "two"), (3, "one")]);
    assert!(s.template_revisions("none").await.unwrap().is_empty());

    let all = s.templates().await.unwrap();
    let names: Vec<(&str, u32)> = all
        .iter()
        .map(|t| (t.revision.name.as_str(), t.latest))
        .collect();
    assert_eq!(names, [("t", 3), ("u", 1)]);
}

pub async fn templates_are_disabled_until_enabled(h: &dyn Harness) {
    let s = h.store().await;
    let off = TemplateDisabled {
        by: "token:sre".into(),
        reason: "site freeze".into(),
        at: 20,
    };
    assert!(
        !s.set_template_disabled("t", Some(off.clone()))
            .await
            .unwrap()
    );
    s.put_template(rev("t", "one", 10)).await.unwrap();
    assert!(
        s.set_template_disabled("t", Some(off.clone()))
            .await
            .unwrap()
    );
    assert_eq!(
        s.template("t", None).await.unwrap().unwrap().disabled,
        Some(off.clone())
    );
    // A new revision does not lift it; every revision reports it.
    s.put_template(rev("t", "two", 30)).await.unwrap();
    assert_eq!(
        s.template("t", Some(1)).await.unwrap().unwrap().disabled,
        Some(off.clone())
    );
    assert_eq!(s.templates().await.unwrap()[0].disabled, Some(off));
    assert!(s.set_template_disabled("t", None).await.unwrap());
    assert_eq!(s.template("t", None).await.unwrap().unwrap().disabled, None);
}

pub async fn concurrent_template_puts_get_distinct_revisions(h: &dyn Harness) {
    let s = h.store().await;
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..8 {
        let s = s.clone();
        puts.spawn(async move {
            s.put_template(rev("t", &format!("body {i}"), i))
                .await
                .unwrap()
        });
    }
    let mut got: Vec<u32> = puts
        .join_all()
        .await
        .into_iter()
        .map(|p| match p {
            TemplatePut::Created(n) => n,
            TemplatePut::Unchanged(n) => panic!("distinct bodies, yet revision {n} unchanged"),
        })
        .collect();
    got.sort();
    assert_eq!(got, (1..=8).collect::<Vec<_>>());
    assert_eq!(s.template_revisions("t").await.unwrap().len(), 8);
}
