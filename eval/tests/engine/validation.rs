//! Validation: every problem at once, each with its exact path.

use flagstaff_eval::model::Document;
use flagstaff_eval::{ValidationError, parse_bundle, parse_document, validate_bundle, validate_document};
use serde_json::{Value, json};

fn errors_of(doc: Value) -> Vec<ValidationError> {
    let doc: Document = serde_json::from_value(doc).expect("parses");
    validate_document(&doc).expect_err("is invalid")
}

fn message_at<'e>(errors: &'e [ValidationError], path: &str) -> &'e str {
    &errors
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("no error at {path}: {errors:#?}"))
        .message
}

#[test]
fn the_design_example_is_valid_once_its_prerequisite_exists() {
    let mut doc = json!({
      "flagstaff": 1,
      "project": {"key": "shop", "name": "Shop"},
      "environments": [{"key": "production", "name": "Production"}],
      "segments": [{"key": "beta", "name": "Beta", "included": ["u-1"], "excluded": [],
                    "rules": [{"clauses": [{"attribute": "email", "op": "ends_with", "values": ["@acme.com"]}]}]}],
      "flags": [{
        "key": "new-checkout", "name": "New checkout", "kind": "flag", "type": "boolean",
        "client_side": true, "temporary": true, "tags": ["checkout"],
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {"production": {
          "enabled": true, "off_variation": "off",
          "prerequisites": [{"flag": "payments-v2", "variations": ["on"]}],
          "targets": [{"variation": "on", "values": ["u-1", "u-2"]}],
          "rules": [{"id": "internal", "clauses": [
                       {"attribute": "email", "op": "ends_with", "values": ["@acme.com"]},
                       {"op": "in_segment", "values": ["beta"]}],
                     "serve": {"variation": "on"}}],
          "fallthrough": {"rollout": {"bucket_by": "targetingKey",
                           "variations": [{"variation": "on", "weight": 25000}, {"variation": "off", "weight": 75000}]}}
        }}
      }]
    });
    let errors = errors_of(doc.clone());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        errors[0].path,
        "flags[0].environments.production.prerequisites[0].flag"
    );
    assert_eq!(errors[0].message, "unknown flag \"payments-v2\"");
    assert_eq!(
        errors[0].to_string(),
        "flags[0].environments.production.prerequisites[0].flag: unknown flag \"payments-v2\""
    );
    doc["flags"].as_array_mut().unwrap().push(json!({
        "key": "payments-v2", "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]}));
    let doc: Document = serde_json::from_value(doc).unwrap();
    assert_eq!(validate_document(&doc), Ok(()));
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let errors = errors_of(json!({
      "flagstaff": 2,
      "project": {"key": "Shop"},
      "environments": [{"key": "production"}, {"key": "production"}, {"key": "bad_env"}],
      "segments": [
        {"key": "beta", "rules": [{"clauses": [{"op": "in_segment", "values": ["beta"]}]}]},
        {"key": "beta"},
        {"key": "Bad Seg", "rules": [{"id": "ok", "clauses": []}]}
      ],
      "flags": [
        {"key": "checkout", "type": "boolean",
         "variations": [{"key": "on", "value": true}, {"key": "off", "value": "false"}, {"key": "on", "value": false}],
         "environments": {
           "production": {
             "off_variation": "of",
             "prerequisites": [{"flag": "missing", "variations": ["on"]},
                               {"flag": "checkout", "variations": ["on"]},
                               {"flag": "pay", "variations": ["nope"]},
                               {"flag": "pay", "variations": []}],
             "targets": [{"variation": "on", "values": ["u-1", "u-1"]}, {"variation": "maybe", "values": ["u-1"]}],
             "rules": [
               {"id": "r", "clauses": [
                  {"attribute": "email", "op": "matches", "values": ["("]},
                  {"attribute": "v", "op": "semver_gt", "values": ["one"]},
                  {"attribute": "t", "op": "before", "values": ["tomorrow", 5]},
                  {"op": "lt", "values": [1]},
                  {"attribute": "x", "op": "in_segment", "values": ["gamma"]},
                  {"attribute": "x", "op": "exists", "values": [1]},
                  {"attribute": "x", "op": "in", "values": []},
                  {"attribute": "x", "op": "gt", "values": ["10"]},
                  {"attribute": "x", "op": "in", "values": [[1], null, "ok"]},
                  {"attribute": "", "op": "contains", "values": [3]}
                ], "serve": {"variation": "yes"}},
               {"id": "r", "clauses": [{"attribute": "x", "op": "exists"}],
                "serve": {"rollout": {"bucket_by": "", "variations": [
                    {"variation": "on", "weight": -5}, {"variation": "off", "weight": 50000}]}}},
               {"id": "bad id!", "clauses": [], "serve": {"rollout": {"variations": []}}}
             ],
             "fallthrough": {"rollout": {"variations": [{"variation": "x", "weight": 100_000}]}}
           },
           "staging": {}
         }},
        {"key": "pay", "type": "string", "variations": [{"key": "Bad Key", "value": "a"}]},
        {"key": "pay", "type": "number", "variations": []},
        {"key": "-bad", "type": "json", "variations": [{"key": "a", "value": null}]},
        {"key": "a", "type": "number", "variations": [{"key": "one", "value": 1}, {"key": "two", "value": "2"}],
         "environments": {"production": {"prerequisites": [{"flag": "b", "variations": ["one"]}]}}},
        {"key": "b", "type": "number", "variations": [{"key": "one", "value": 1.5}],
         "environments": {"production": {"prerequisites": [{"flag": "a", "variations": ["one"]}]}}}
      ]
    }));
    let p = "flags[0].environments.production";
    let expected = [
        "flagstaff".to_owned(),
        "project.key".into(),
        "environments[1].key".into(),
        "environments[2].key".into(),
        "segments[0].rules[0].clauses[0].op".into(),
        "segments[1].key".into(),
        "segments[2].key".into(),
        "segments[2].rules[0].clauses".into(),
        "flags[0].variations[1].value".into(),
        "flags[0].variations[2].key".into(),
        "flags[0].environments.staging".into(),
        format!("{p}.off_variation"),
        format!("{p}.prerequisites[0].flag"),
        format!("{p}.prerequisites[1].flag"),
        format!("{p}.prerequisites[2].variations[0]"),
        format!("{p}.prerequisites[3].flag"),
        format!("{p}.prerequisites[3].variations"),
        format!("{p}.targets[1].variation"),
        format!("{p}.targets[1].values[0]"),
        format!("{p}.rules[0].clauses[0].values[0]"),
        format!("{p}.rules[0].clauses[1].values[0]"),
        format!("{p}.rules[0].clauses[2].values[0]"),
        format!("{p}.rules[0].clauses[3].attribute"),
        format!("{p}.rules[0].clauses[4].attribute"),
        format!("{p}.rules[0].clauses[4].values[0]"),
        format!("{p}.rules[0].clauses[5].values"),
        format!("{p}.rules[0].clauses[6].values"),
        format!("{p}.rules[0].clauses[7].values[0]"),
        format!("{p}.rules[0].clauses[8].values[0]"),
        format!("{p}.rules[0].clauses[8].values[1]"),
        format!("{p}.rules[0].clauses[9].attribute"),
        format!("{p}.rules[0].clauses[9].values[0]"),
        format!("{p}.rules[0].serve.variation"),
        format!("{p}.rules[1].id"),
        format!("{p}.rules[1].serve.rollout.bucket_by"),
        format!("{p}.rules[1].serve.rollout.variations[0].weight"),
        format!("{p}.rules[1].serve.rollout.variations"),
        format!("{p}.rules[2].id"),
        format!("{p}.rules[2].clauses"),
        format!("{p}.rules[2].serve.rollout.variations"),
        format!("{p}.fallthrough.rollout.variations[0].variation"),
        "flags[1].variations[0].key".into(),
        "flags[2].key".into(),
        "flags[2].variations".into(),
        "flags[3].key".into(),
        "flags[4].variations[1].value".into(),
        "flags[5].environments.production.prerequisites[0].flag".into(),
    ];
    let mut got: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{errors:#?}");

    // The messages say what is wrong.
    let checks = [
        ("flagstaff", "unsupported format version 2"),
        ("project.key", "invalid project key \"Shop\""),
        (
            "environments[1].key",
            "duplicate environment key \"production\" (also environments[0])",
        ),
        ("environments[2].key", "^[a-z0-9][a-z0-9-]{0,62}$"),
        (
            "segments[0].rules[0].clauses[0].op",
            "in_segment cannot be used in a segment's own rules",
        ),
        ("segments[1].key", "duplicate segment key \"beta\""),
        (
            "flags[0].variations[1].value",
            "expected true or false for a boolean flag, got \"false\"",
        ),
        ("flags[0].variations[2].key", "duplicate variation key \"on\""),
        ("flags[0].environments.staging", "unknown environment \"staging\""),
        (
            "flags[0].environments.production.off_variation",
            "unknown variation \"of\" of flag \"checkout\" (its variations: on, off, on)",
        ),
        (
            "flags[0].environments.production.prerequisites[1].flag",
            "cannot be its own prerequisite",
        ),
        (
            "flags[0].environments.production.prerequisites[2].variations[0]",
            "unknown variation \"nope\" of flag \"pay\"",
        ),
        (
            "flags[0].environments.production.prerequisites[3].flag",
            "duplicate prerequisite \"pay\"",
        ),
        (
            "flags[0].environments.production.targets[1].values[0]",
            "\"u-1\" is already targeted by targets[0]",
        ),
        (
            "flags[0].environments.production.rules[0].clauses[0].values[0]",
            "invalid regex \"(\": unclosed group",
        ),
        (
            "flags[0].environments.production.rules[0].clauses[1].values[0]",
            "invalid semantic version \"one\"",
        ),
        (
            "flags[0].environments.production.rules[0].clauses[2].values[0]",
            "invalid date \"tomorrow\"",
        ),
        (
            "flags[0].environments.production.rules[0].clauses[3].attribute",
            "op lt needs an attribute",
        ),
        (
            "flags[0].environments.production.rules[0].clauses[4].attribute",
            "in_segment takes no attribute",
        ),
        (
            "flags[0].environments.production.rules[0].clauses[4].values[0]",
            "unknown segment \"gamma\"",
        ),
        (
            "flags[0].environments.production.rules[0].clauses[5].values",
            "exists takes no values",
        ),
        (
            "flags[0].environments.production.rules[0].clauses[6].values",
            "op in needs at least one value",
        ),
        (
            "flags[0].environments.production.rules[0].clauses[7].values[0]",
            "op gt takes numbers, got \"10\"",
        ),
        (
            "flags[0].environments.production.rules[0].clauses[9].values[0]",
            "op contains takes strings, got 3",
        ),
        (
            "flags[0].environments.production.rules[1].id",
            "duplicate rule id \"r\"",
        ),
        (
            "flags[0].environments.production.rules[1].serve.rollout.variations[0].weight",
            "weight -5 is negative",
        ),
        (
            "flags[0].environments.production.rules[1].serve.rollout.variations",
            "weights sum to 49995; they must sum to 100000",
        ),
        (
            "flags[0].environments.production.rules[2].serve.rollout.variations",
            "at least one variation",
        ),
        ("flags[2].key", "duplicate flag key \"pay\" (also flags[1])"),
        (
            "flags[3].key",
            "invalid flag key \"-bad\": must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        ),
        (
            "flags[5].environments.production.prerequisites[0].flag",
            "prerequisite cycle: a → b → a",
        ),
    ];
    for (path, needle) in checks {
        let message = message_at(&errors, path);
        assert!(message.contains(needle), "{path}: {message:?} lacks {needle:?}");
    }
}

fn chain(n: usize) -> Value {
    let flags: Vec<Value> = (0..n)
        .map(|i| {
            let mut state = json!({"enabled": true});
            if i + 1 < n {
                state["prerequisites"] = json!([{"flag": format!("f{}", i + 1), "variations": ["on"]}]);
            }
            json!({"key": format!("f{i}"), "type": "boolean",
                   "variations": [{"key": "on", "value": true}], "environments": {"production": state}})
        })
        .collect();
    json!({"flagstaff": 1, "project": {"key": "p"}, "environments": [{"key": "production"}], "flags": flags})
}

#[test]
fn prerequisite_chains_deeper_than_evaluation_follows_are_refused() {
    let ok: Document = serde_json::from_value(chain(17)).unwrap();
    assert_eq!(validate_document(&ok), Ok(()));
    let errors = errors_of(chain(18));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].path, "flags[0].environments.production.prerequisites");
    assert!(
        errors[0].message.contains("17 flags deep"),
        "{}",
        errors[0].message
    );
}

#[test]
fn a_long_chain_is_checked_without_deep_recursion() {
    // Thousands of links would overflow a recursive search's stack in a test thread.
    let errors = errors_of(chain(20_000));
    assert_eq!(
        errors.len(),
        20_000 - 17,
        "one error per flag with a chain too deep"
    );
}

#[test]
fn cycles_are_found_in_each_environment() {
    let errors = errors_of(json!({
        "flagstaff": 1, "project": {"key": "p"},
        "environments": [{"key": "dev"}, {"key": "prod"}],
        "flags": [
            {"key": "a", "type": "boolean", "variations": [{"key": "on", "value": true}],
             "environments": {"prod": {"prerequisites": [{"flag": "b", "variations": ["on"]}]}}},
            {"key": "b", "type": "boolean", "variations": [{"key": "on", "value": true}],
             "environments": {"dev": {"prerequisites": [{"flag": "c", "variations": ["on"]}]},
                              "prod": {"prerequisites": [{"flag": "c", "variations": ["on"]}]}}},
            {"key": "c", "type": "boolean", "variations": [{"key": "on", "value": true}],
             "environments": {"prod": {"prerequisites": [{"flag": "a", "variations": ["on"]}]}}}
        ]
    }));
    // dev has b → c only; prod has a → b → c → a.
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].path, "flags[2].environments.prod.prerequisites[0].flag");
    assert_eq!(errors[0].message, "prerequisite cycle: a → b → c → a");
}

#[test]
fn parse_errors_name_the_path() {
    let cases: [(&str, &str, &str); 6] = [
        (
            r#"{"flagstaff":1,"project":{"key":"p"},"flags":[{"key":"f","type":"boolean","variations":[],
               "environments":{"production":{"rules":[{"clauses":[{"attribute":"a","op":"in","values":[]},
               {"attribute":"a","op":"endswith","values":[]}],"serve":{"variation":"on"}}]}}}]}"#,
            "flags[0].environments.production.rules[0].clauses[1].op",
            "unknown variant `endswith`",
        ),
        (
            r#"{"flagstaff":1,"project":{"key":"p"},"flags":[{"key":"f","type":"boolean","variations":[],"clientside":true}]}"#,
            "flags[0].clientside",
            "unknown field `clientside`",
        ),
        (
            r#"{"flagstaff":1,"project":{"key":"p"},"flags":[{"key":"f","type":"boolean","variations":[],
               "environments":{"production":{"fallthrough":{"rollout":{"variations":[{"variation":"on","weight":"ten"}]}}}}}]}"#,
            "flags[0].environments.production.fallthrough.rollout.variations[0].weight",
            "invalid type: string \"ten\", expected i64",
        ),
        (
            r#"{"flagstaff":1,"project":{"key":"p"},"flags":[{"key":"f","variations":[]}]}"#,
            "flags[0]",
            "missing field `type`",
        ),
        (
            r#"{"flagstaff":1,"project":{"key":"p"}} trailing"#,
            "",
            "trailing characters",
        ),
        (r"not json", "", "expected"),
    ];
    for (json, path, needle) in cases {
        let e = parse_document(json.as_bytes()).expect_err(json);
        assert_eq!(e.path, path, "{e}");
        assert!(e.message.contains(needle), "{e}");
    }
    assert!(parse_document(br#"{"flagstaff":1,"project":{"key":"p"}}"#).is_ok());
}

#[test]
fn a_bundle_is_validated_against_its_one_environment() {
    let bundle = parse_bundle(
        br#"{"flagstaff":1,"project":{"key":"p"},"environment":"production","revision":3,
            "flags":[{"key":"f","type":"boolean","variations":[{"key":"on","value":true}],
                      "environments":{"production":{"enabled":true},"staging":{}}}]}"#,
    )
    .unwrap();
    let errors = validate_bundle(&bundle).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].path, "flags[0].environments.staging");
    assert_eq!(
        errors[0].message,
        "this bundle is for environment \"production\", not \"staging\""
    );

    let bad_env =
        parse_bundle(br#"{"flagstaff":1,"project":{"key":"p"},"environment":"Prod","revision":0}"#).unwrap();
    assert_eq!(validate_bundle(&bad_env).unwrap_err()[0].path, "environment");
}

#[test]
fn validation_errors_serialize_as_path_and_message() {
    let e = ValidationError::new("flags[0].key", "bad");
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        json!({"path": "flags[0].key", "message": "bad"})
    );
}

/// What the admin pages show in a one-line field must be one line, what they show in a textarea
/// must not hold a carriage return or NUL (an HTML parser turns both into something else), and
/// an optional text is left out rather than empty: so a page posted back untouched stores
/// exactly what it showed. Everything else (commas, quotes, tabs, `<script>`, spaces at the
/// ends, unicode) is kept as given.
#[test]
fn texts_the_pages_could_not_show_unchanged_are_refused_at_their_path() {
    let errors = errors_of(json!({
      "flagstaff": 1,
      "project": {"key": "shop"},
      "environments": [{"key": "production"}],
      "segments": [{"key": "beta", "name": "Beta\nTesters", "description": "a\r\nb",
                    "rules": [{"clauses": [{"attribute": "e\nmail", "op": "exists"}]}]}],
      "flags": [{
        "key": "f", "name": "New\ncheckout", "description": "nul\u{0}", "type": "string",
        "variations": [{"key": "a", "value": "line\r\nbreak", "name": ""},
                       {"key": "b", "value": "fine\nwith \"lines\", <script>", "name": " Doe, Jane\t"}],
        "environments": {"production": {
          "rules": [{"description": "", "clauses": [{"attribute": "plan", "op": "in", "values": ["x"]}],
                     "serve": {"rollout": {"salt": "", "variations": [
                         {"variation": "a", "weight": 50000}, {"variation": "a", "weight": 50000}]}}},
                    {"description": "two\nlines", "clauses": [{"attribute": "plan", "op": "in", "values": ["x"]}],
                     "serve": {"rollout": {"bucket_by": "org\r", "salt": "s\n", "variations": [
                         {"variation": "a", "weight": 100_000}]}}}]
        }}
      }]
    }));
    let production = "flags[0].environments.production";
    for (path, starts) in [
        ("segments[0].name".to_owned(), "must be one line"),
        ("segments[0].description".to_owned(), "line breaks must be"),
        (
            "segments[0].rules[0].clauses[0].attribute".to_owned(),
            "must be one line",
        ),
        ("flags[0].name".to_owned(), "must be one line"),
        ("flags[0].description".to_owned(), "line breaks must be"),
        ("flags[0].variations[0].value".to_owned(), "line breaks must be"),
        ("flags[0].variations[0].name".to_owned(), "must not be empty"),
        (format!("{production}.rules[0].description"), "must not be empty"),
        (
            format!("{production}.rules[0].serve.rollout.salt"),
            "must not be empty",
        ),
        (
            format!("{production}.rules[0].serve.rollout.variations[1].variation"),
            "variation \"a\" is already in this rollout",
        ),
        (format!("{production}.rules[1].description"), "must be one line"),
        (
            format!("{production}.rules[1].serve.rollout.bucket_by"),
            "must be one line",
        ),
        (
            format!("{production}.rules[1].serve.rollout.salt"),
            "must be one line",
        ),
    ] {
        let message = message_at(&errors, &path);
        assert!(message.starts_with(starts), "{path}: {message}");
    }
    assert_eq!(errors.len(), 13, "nothing else: {errors:#?}");
}
