//! Strict reading of plain serde structs: the paths and suggestions of unknown fields, wrong
//! types, and what must still pass (nulls, empty values, enums, maps of free keys).

use std::collections::BTreeMap;

use serde::Deserialize;
use warren_strict::{from_str, ProblemKind};

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Scenario {
    name: String,
    #[serde(default)]
    phases: Vec<Phase>,
    labels: Option<BTreeMap<String, String>>,
    pattern: Option<Pattern>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Phase {
    duration_seconds: u64,
    rate: Option<f64>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
enum Pattern {
    Steady,
    Burst { peak: u32 },
}

fn message(yaml: &str) -> String {
    match from_str::<Scenario>(yaml) {
        Ok(s) => panic!("accepted: {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_typo_in_a_list_item_names_its_index_and_the_field_meant() {
    assert_eq!(
        message("name: a\nphases:\n- durationSeconds: 1\n- durationSecond: 2\n"),
        "phases[1].durationSecond: unknown field (did you mean durationSeconds?); \
         phases[1]: missing field `durationSeconds`"
    );
}

#[test]
fn an_unknown_field_far_from_every_known_one_lists_them() {
    assert_eq!(
        message("name: a\ncolour: red\n"),
        "colour: unknown field (known fields: name, phases, labels, pattern)"
    );
}

#[test]
fn every_unknown_field_is_reported() {
    let err = from_str::<Scenario>("nam: a\nname: b\nphases:\n- durationSeconds: 1\n  rat: 2\n")
        .unwrap_err();
    let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["nam", "phases[0].rat"]);
    assert!(matches!(
        &err.problems[1].kind,
        ProblemKind::UnknownField { suggestion: Some(s), .. } if s == "rate"
    ));
}

#[test]
fn a_wrong_type_names_the_field_and_the_type_expected() {
    assert_eq!(
        message("name: a\nphases:\n- durationSeconds: ten\n"),
        r#"phases[0].durationSeconds: invalid type: string "ten", expected u64"#
    );
    assert_eq!(
        message("name: [a]\n"),
        "name: invalid type: sequence, expected a string"
    );
}

#[test]
fn an_unknown_field_inside_an_enum_variant_is_reported() {
    assert_eq!(
        message("name: a\npattern:\n  burst:\n    peek: 3\n"),
        "pattern.burst.peek: unknown field (did you mean peak?); pattern.burst: missing field `peak`"
    );
}

#[test]
fn nulls_empty_values_enums_and_free_keys_pass() {
    let got =
        from_str::<Scenario>("name: a\nphases: []\nlabels:\n  anything: goes\npattern: steady\n")
            .unwrap();
    assert_eq!(got.pattern, Some(Pattern::Steady));
    assert_eq!(got.labels.unwrap()["anything"], "goes");
    let got = from_str::<Scenario>(
        "name: a\nlabels: null\npattern:\n  burst:\n    peak: 3\nphases:\n- durationSeconds: 1\n  rate: 2\n",
    )
    .unwrap();
    assert_eq!(got.labels, None);
    assert_eq!(got.pattern, Some(Pattern::Burst { peak: 3 }));
    assert_eq!(got.phases[0].rate, Some(2.0));
}

#[test]
fn text_that_is_not_yaml_is_a_syntax_error() {
    let err = from_str::<Scenario>("name: [a\n").unwrap_err();
    assert!(
        matches!(err.problems[0].kind, ProblemKind::Syntax(_)),
        "{err}"
    );
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct Denying {
    window_seconds: u64,
}

#[test]
fn a_type_that_denies_unknown_fields_reports_each_once_with_its_path() {
    let err = from_str::<Vec<Denying>>("- windowSeconds: 1\n- windowSecond: 2\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "[1].windowSecond: unknown field (did you mean windowSeconds?)"
    );
}
