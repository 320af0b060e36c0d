//! Submit and Validate: structural validation and its error messages.

use interlock_proto::v1;
use interlock_tests::{TestServer, req, wait_final};
use tonic::Code;

#[tokio::test]
async fn valid_name_with_zero_blocks_is_invalid_argument_and_server_lives() {
    // Crashed the ancestor's server.
    let s = TestServer::start().await;
    let mut c = s.raw().await;
    let err = c
        .submit(req::work("SatelliteDiskErase", vec![]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("no blocks"), "{}", err.message());
    // Still serving.
    let ok = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await;
    assert!(ok.is_ok());
}

#[tokio::test]
async fn empty_request_unknown_job_and_bad_args_name_their_location() {
    let s = TestServer::start().await;
    let mut c = s.raw().await;

    let err = c.submit(v1::WorkReq::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("no name"), "{}", err.message());

    let bad = req::work(
        "x",
        vec![
            req::block(1, vec![req::probe(0)]),
            req::block(
                1,
                vec![
                    req::job("sleep", &[("seconds", "1")]),
                    req::job("frobnicate", &[]),
                    req::job("sleep", &[("seconds", "-2")]),
                    req::job("tokenBucket", &[("bucket", "b"), ("fatal", "yes")]),
                    req::job("diskErase", &[("machine", "aab00")]),
                ],
            ),
            req::block(1, vec![]),
        ],
    );
    let err = c.submit(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let m = err.message();
    for expected in [
        "(block 1, job 1): unknown job \"frobnicate\"",
        "(block 1, job 2): argument \"seconds\"",
        "(block 1, job 3): argument \"fatal\": \"yes\" is not \"true\" or \"false\"",
        "(block 1, job 4): diskErase needs argument \"site\"",
        "(block 2): the block has no jobs",
    ] {
        assert!(m.contains(expected), "missing {expected:?} in {m}");
    }
    // The same violations come as structured details.
    use tonic_types::StatusExt;
    let details = err.get_error_details();
    let fields: Vec<_> = details
        .bad_request()
        .expect("BadRequest details")
        .field_violations
        .iter()
        .map(|f| f.field.clone())
        .collect();
    assert!(
        fields.contains(&"blocks[1].jobs[1]".to_string()),
        "{fields:?}"
    );
    assert!(fields.contains(&"blocks[2]".to_string()), "{fields:?}");
}

#[tokio::test]
async fn unknown_argument_and_negative_durations_are_rejected() {
    let s = TestServer::start().await;
    let mut c = s.raw().await;
    let err = c
        .submit(req::work(
            "x",
            vec![req::block(
                1,
                vec![req::job("sleep", &[("seconds", "0"), ("Seconds", "1")])],
            )],
        ))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("sleep has no argument \"Seconds\""),
        "{}",
        err.message()
    );

    let mut r = req::work("x", vec![req::block(1, vec![req::probe(0)])]);
    r.deadline = Some(prost_types_duration(-1));
    let err = c.submit(r).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("deadline must be a non-negative duration")
    );

    // A job's duration, deep in a request: its place is named. The server
    // converts each job as it decodes it, so this is found while decoding.
    let mut late = req::probe(0);
    late.timeout = Some(prost_types_duration(-3));
    let mut retry = req::probe(0);
    retry.retry = Some(v1::RetryPolicy {
        max_attempts: 2,
        initial_backoff: Some(prost_types_duration(-1)),
        max_backoff: None,
    });
    let r = req::work(
        "x",
        vec![
            req::block(1, vec![req::probe(0)]),
            req::block(1, vec![req::probe(0), req::probe(0), late, retry]),
        ],
    );
    let err = c.submit(r).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("blocks[1].jobs[2].timeout must be a non-negative duration, got -3s 0ns"),
        "{}",
        err.message()
    );
}

fn prost_types_duration(seconds: i64) -> interlock_proto::pbjson_types::Duration {
    interlock_proto::pbjson_types::Duration { seconds, nanos: 0 }
}

#[tokio::test]
async fn limits_are_configurable_and_name_what_to_fix() {
    let s = TestServer::start_with(|c| c.limits.max_jobs_per_block = 3).await;
    let mut c = s.raw().await;
    let err = c
        .submit(req::work(
            "x",
            vec![req::block(1, (0..4).map(|_| req::probe(0)).collect())],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("(block 0): 4 jobs in the block; the limit is 3"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn validate_is_a_dry_run_that_lists_every_violation() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let r = c
        .validate(req::work(
            "x",
            vec![req::block(
                1,
                vec![req::job("nope", &[]), req::job("sleep", &[])],
            )],
        ))
        .await
        .unwrap();
    assert!(!r.ok);
    assert_eq!(r.violations.len(), 2);
    assert_eq!((r.violations[0].block, r.violations[0].job), (0, 0));
    assert_eq!((r.violations[1].block, r.violations[1].job), (0, 1));

    let good = c
        .validate(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap();
    assert!(good.ok, "{good:?}");
}

#[tokio::test]
async fn job_catalog_lists_schemas_and_idempotency() {
    let s = TestServer::start().await;
    let cat = s.client().await.job_catalog().await.unwrap();
    let names: Vec<_> = cat.jobs.iter().map(|j| j.name.as_str()).collect();
    for n in ["diskErase", "sleep", "tokenBucket", "validateDecom"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let erase = cat.jobs.iter().find(|j| j.name == "diskErase").unwrap();
    assert!(!erase.idempotent);
    assert!(erase.args.iter().any(|a| a.name == "machine" && a.required));
    let sleep = cat.jobs.iter().find(|j| j.name == "sleep").unwrap();
    assert!(sleep.idempotent);
}

/// Sends raw bytes as one gRPC message and returns the status.
async fn raw_call(s: &TestServer, path: &'static str, body: Vec<u8>) -> tonic::Status {
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    #[derive(Default)]
    struct Raw;
    struct Enc;
    struct Dec;
    impl Encoder for Enc {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            use bytes::BufMut;
            buf.put_slice(&item);
            Ok(())
        }
    }
    impl Decoder for Dec {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
            use bytes::Buf;
            Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
        }
    }
    impl Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = Enc;
        type Decoder = Dec;
        fn encoder(&mut self) -> Enc {
            Enc
        }
        fn decoder(&mut self) -> Dec {
            Dec
        }
    }
    let ch = tonic::transport::Channel::from_shared(s.addr())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.unwrap();
    g.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        Raw,
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn undecodable_requests_are_invalid_argument_on_both_protocols() {
    let s = TestServer::start().await;
    // Field 1 (name), a string whose bytes are not UTF-8.
    let bad_utf8 = vec![0x0a, 0x02, 0xff, 0xfe];
    // A length that runs past the end of the message.
    let truncated = vec![0x0a, 0x40, b'x'];
    for path in [
        "/interlock.v1.Workflow/Submit",
        "/diskerase.Workflow/Submit",
        "/interlock.v1.Workflow/Validate",
    ] {
        for body in [bad_utf8.clone(), truncated.clone()] {
            let e = raw_call(&s, path, body).await;
            assert_eq!(e.code(), Code::InvalidArgument, "{path}: {e}");
            assert!(
                e.message().contains("could not be decoded"),
                "{}",
                e.message()
            );
        }
    }
}

/// The size of an error's trailers on the wire: the percent-encoded
/// message, the base64 `grpc-status-details-bin` and every other entry.
fn trailer_bytes(e: &tonic::Status) -> usize {
    let message: usize = e
        .message()
        .bytes()
        .map(|b| {
            if (b' '..=b'~').contains(&b) && b != b'%' {
                1
            } else {
                3
            }
        })
        .sum();
    let details = e.details().len().div_ceil(3) * 4;
    let others: usize = e
        .metadata()
        .clone()
        .into_headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    let names = "grpc-status".len() + "grpc-message".len() + "grpc-status-details-bin".len();
    message + details + others + names + 2
}

/// 50 or more violations once made a trailer larger than clients accept
/// (grpcio: "metadata size exceeds hard limit"). The details are capped
/// and say how many there are in all, on both protocols.
#[tokio::test]
async fn two_hundred_violations_fit_an_error_under_8_kb_on_both_protocols() {
    use interlock_tests::ancestor as a;
    use tonic_types::StatusExt;
    let s = TestServer::start().await;
    let jobs = (0..200).map(|i| req::job(&format!("frobnicate{i}"), &[("machine", "aab00")]));
    let v1_err = s
        .raw()
        .await
        .submit(req::work("x", vec![req::block(1, jobs.collect())]))
        .await
        .unwrap_err();
    let old_jobs = (0..200).map(|i| a::Job {
        name: format!("frobnicate{i}"),
        desc: String::new(),
        args: [("machine".to_string(), "aab00".to_string())].into(),
    });
    let old_err = s
        .ancestor()
        .await
        .submit(a::WorkReq {
            name: "x".into(),
            desc: String::new(),
            blocks: vec![a::Block {
                desc: String::new(),
                rate_limit: 1,
                jobs: old_jobs.collect(),
            }],
        })
        .await
        .unwrap_err();
    for (protocol, e) in [("interlock.v1", v1_err), ("diskerase", old_err)] {
        assert_eq!(e.code(), Code::InvalidArgument, "{protocol}: {e}");
        let bytes = trailer_bytes(&e);
        assert!(bytes < 8 * 1024, "{protocol}: {bytes} bytes of trailers");
        let m = e.message();
        assert!(
            m.starts_with("invalid request (200 violations):"),
            "{protocol}: {m}"
        );
        assert!(
            m.contains("more (Validate lists them all)"),
            "{protocol}: {m}"
        );
        let d = e.get_error_details();
        let info = d.error_info().expect("the truncation is noted");
        assert_eq!(info.reason, "TRUNCATED", "{protocol}");
        assert_eq!(info.metadata["violations"], "200", "{protocol}");
        let shown: usize = info.metadata["shown"].parse().unwrap();
        let listed = d.bad_request().expect("BadRequest").field_violations.len();
        assert_eq!(listed, shown, "{protocol}");
        assert!((1..200).contains(&shown), "{protocol}: {shown} shown");
    }
}

/// Label values and `request_id` are documented as at most 1 KB; a 15 MB
/// request id was once stored. Refused, naming the limit, and nothing is
/// stored.
#[tokio::test]
async fn a_2_kb_request_id_or_label_value_is_refused_naming_the_1_kb_limit() {
    let s = TestServer::start().await;
    let mut c = s.raw().await;
    let big = "k".repeat(2048);
    let mut with_id = req::work("x", vec![req::block(1, vec![req::probe(0)])]);
    with_id.request_id = big.clone();
    let mut with_label = req::work("x", vec![req::block(1, vec![req::probe(0)])]);
    with_label.labels.insert("team".into(), big);
    for (r, expected) in [
        (
            with_id,
            "WorkReq.request_id is 2048 bytes; the limit is 1024",
        ),
        (
            with_label,
            "label \"team\" is too large (key 4 bytes, value 2048 bytes; the limit is 1024 each)",
        ),
    ] {
        let e = c.submit(r).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(e.message().contains(expected), "{}", e.message());
    }
    let listed = c.list(v1::ListReq::default()).await.unwrap().into_inner();
    assert!(listed.workflows.is_empty(), "nothing stored: {listed:?}");
}

/// A request is at most 8 MiB in all (`limits.max_request_bytes`):
/// INVALID_ARGUMENT naming that limit. Past the gRPC message limit
/// (`max_message_bytes`, 16 MiB) the message is refused before it is
/// decoded, by tonic, as OUT_OF_RANGE naming that limit.
#[tokio::test]
async fn a_request_past_the_size_limits_is_refused_naming_the_limit() {
    let s = TestServer::start().await;
    let mut c = s.raw().await;
    let value = "1".repeat(4000);
    let of_size = |bytes: usize| {
        let jobs = (0..bytes / 4000 + 1)
            .map(|_| req::job("probe", &[("ms", &value)]))
            .collect();
        req::work("x", vec![req::block(1, jobs)])
    };
    let e = c.submit(of_size(9 << 20)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(
        e.message()
            .contains("; the limit is 8388608 (split the work into several workflows)"),
        "{}",
        e.message()
    );
    let e = c.submit(of_size(17 << 20)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e}");
    assert!(
        e.message().contains("the limit is: 16777216 bytes"),
        "{}",
        e.message()
    );
    // Still serving.
    c.submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap();
}

#[tokio::test]
async fn validate_reports_what_submit_and_exec_would_meet() {
    let s = TestServer::start_with(|c| {
        std::fs::write(
            c.configs.join("limits.json"),
            r#"[{"Name": "twoSites", "Max": 2, "Count": "arg:site", "Jobs": ["diskErase"]}]"#,
        )
        .unwrap();
    })
    .await;
    let c = s.client().await;
    let erase = req::satellite_erase("aab", &["aab00", "aab01"]);
    let v = c.validate(erase.clone()).await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.estop_mode, v1::EsMode::Go as i32);
    assert_eq!(v.sites, ["aab"]);
    assert_eq!(v.machines, ["aab00", "aab01"]);
    assert_eq!(v.limits, ["twoSites"]);
    assert_eq!(v.approvals_needed, 0);
    assert_eq!(v.buckets.len(), 1);
    let b = &v.buckets[0];
    assert_eq!(
        (b.bucket.as_str(), b.needed, b.available, b.capacity),
        ("diskEraseSatellite", 1, 1, 1)
    );

    // Once the token is spent, the dry run says so, and when the next comes.
    let id = c.submit(erase.clone()).await.unwrap();
    c.exec(&id).await.unwrap();
    wait_final(&c, &id).await;
    let v = c.validate(erase).await.unwrap();
    let b = &v.buckets[0];
    assert_eq!((b.needed, b.available), (1, 0));
    assert!(b.next_token_in.is_some());
}
