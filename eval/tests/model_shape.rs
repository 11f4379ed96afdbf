use flagstaff_eval::model::*;

#[test]
fn design_example_parses_and_round_trips() {
    let doc: Document = serde_json::from_str(r#"{
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
}"#).unwrap();
    let state = &doc.flags[0].environments["production"];
    assert!(matches!(state.fallthrough, Some(Serve::Rollout(_))));
    assert_eq!(state.rules[0].serve, Serve::Variation("on".into()));
    let again: Document = serde_json::from_value(serde_json::to_value(&doc).unwrap()).unwrap();
    assert_eq!(doc, again);
}

#[test]
fn unknown_fields_and_ambiguous_serves_are_rejected() {
    let typo = r#"{"flagstaff":1,"project":{"key":"p"},"flags":[{"key":"f","type":"boolean","variations":[],"clientside":true}]}"#;
    assert!(serde_json::from_str::<Document>(typo).is_err());
    let two = r#"{"variation":"on","rollout":{"variations":[]}}"#;
    assert!(serde_json::from_str::<Serve>(two).is_err());
    let other = r#"{"varation":"on"}"#;
    assert!(serde_json::from_str::<Serve>(other).is_err());
}
