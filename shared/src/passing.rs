//! The pass criteria (合格基準) of an exam year, resolved from its rule pack
//! ([`crate::rules`]), and the pass/fail judgement of a year's points.
//!
//! A candidate passes when all three hold: the required section (必修問題) reaches its pass mark
//! (80 % of its points), the general section (一般問題 and 臨床実地問題 outside the required
//! section) reaches the year's cut-off, and at most the year's limit of prohibited choices
//! (禁忌肢) were chosen.

use serde::{Deserialize, Serialize};

use crate::exam::Section;
use crate::rules::{PassKind, ProvenanceKind, RulePack};

/// One year's criteria, as its rule pack sets them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PassCriteria {
    /// The exam's number, e.g. "116".
    pub exam: String,
    pub year: u16,
    /// The version of the rule pack the criteria come from.
    #[serde(default)]
    pub pack_version: u32,
    /// Points needed in the required section, and its total after excluded questions.
    pub required_min: u32,
    pub required_max: u32,
    /// Points needed in the general section, and its total after excluded questions.
    pub general_min: u32,
    pub general_max: u32,
    /// The most prohibited choices a passing candidate may have chosen.
    pub prohibited_max: u32,
    /// What of the criteria stands in for a figure not yet known; a verdict under them is
    /// provisional. Empty when every figure is official or annotated.
    #[serde(default)]
    pub provisional: Vec<String>,
    /// Whether a pass mark is provisional (every verdict under them is).
    #[serde(default)]
    pub provisional_marks: bool,
    /// Whether the prohibited-choice limit is provisional (a verdict that applies it is).
    #[serde(default)]
    pub provisional_limit: bool,
    /// Where the figures come from, one line each.
    #[serde(default)]
    pub sources: Vec<String>,
}

impl PassCriteria {
    /// The criteria `pack` sets; `examinee_mean` gives a section's examinees' mean points for a
    /// pass mark set relative to them (`None` when the questions do not carry examinee
    /// accuracy). An error says why no criteria can be had.
    pub fn from_pack(
        pack: &RulePack,
        examinee_mean: impl Fn(Section) -> Option<f64>,
    ) -> Result<Self, String> {
        let mut provisional = Vec::new();
        let mut sources: Vec<String> = Vec::new();
        // Whether the entry is provisional.
        let mut note = |what: String, provenance: &crate::rules::Provenance| -> bool {
            let standing_in = provenance.kind == ProvenanceKind::Provisional;
            if standing_in {
                provisional.push(format!("{what} ({})", provenance.source));
            }
            let line = format!("{what}: {provenance}");
            if !sources.contains(&line) {
                sources.push(line);
            }
            standing_in
        };
        let mut mark = |section: Section| -> Result<(u32, u32, bool), String> {
            let rule = pack.section(section).ok_or_else(|| {
                format!(
                    "the rule pack of exam {} has no {} section",
                    pack.exam,
                    section.id()
                )
            })?;
            let pass = &rule.pass;
            let min = match pass.kind {
                PassKind::Points => pass.min.unwrap_or(pass.of),
                PassKind::Share => ceil_share(pass.share.unwrap_or(1.0), f64::from(pass.of)),
                PassKind::ExamineeMean => {
                    let mean = examinee_mean(section).ok_or_else(|| {
                        format!(
                            "the {} pass mark is set relative to the examinees, and not every \
                             question of the section carries its examinee accuracy",
                            section.id()
                        )
                    })?;
                    ceil_share(pass.share.unwrap_or(1.0), mean)
                }
            };
            let standing_in = note(
                format!("{} section: {min} of {} points", section.id(), pass.of),
                pack.provenance_of(pass.provenance.as_ref()),
            );
            Ok((min, pass.of, standing_in))
        };
        let (required_min, required_max, required_provisional) = mark(Section::Required)?;
        let (general_min, general_max, general_provisional) = mark(Section::General)?;
        let limit = &pack.prohibited_limit;
        let provisional_limit = note(
            format!("at most {} prohibited choices", limit.value),
            pack.provenance_of(limit.provenance.as_ref()),
        );
        Ok(Self {
            exam: pack.exam.clone(),
            year: pack.year,
            pack_version: pack.version,
            required_min,
            required_max,
            general_min,
            general_max,
            prohibited_max: limit.value,
            provisional,
            provisional_marks: required_provisional || general_provisional,
            provisional_limit,
            sources,
        })
    }
}

/// `share · of`, rounded up (a hair of slack for `0.8 · 200` computed as 160.000…01).
fn ceil_share(share: f64, of: f64) -> u32 {
    let value = (share * of - 1e-9).ceil().max(0.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let points = value.min(f64::from(u32::MAX)) as u32;
    points
}

/// The judgement of one year's points against its criteria.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verdict {
    pub required_pass: bool,
    pub general_pass: bool,
    /// `None` when the exam set lists no prohibited choices, so the rule cannot be applied.
    pub prohibited_pass: Option<bool>,
    pub pass: bool,
    /// The verdict rests on a provisional figure (a cut-off not yet announced, say): shown as
    /// provisional wherever it appears.
    #[serde(default)]
    pub provisional: bool,
}

impl PassCriteria {
    /// Judges a year's section points and the number of prohibited choices chosen (`None`
    /// when the exam set does not list prohibited choices).
    pub fn judge(&self, required: u32, general: u32, prohibited_chosen: Option<u32>) -> Verdict {
        let required_pass = required >= self.required_min;
        let general_pass = general >= self.general_min;
        let prohibited_pass = prohibited_chosen.map(|n| n <= self.prohibited_max);
        Verdict {
            required_pass,
            general_pass,
            prohibited_pass,
            pass: required_pass && general_pass && prohibited_pass.unwrap_or(true),
            provisional: self.provisional_marks
                || (self.provisional_limit && prohibited_chosen.is_some()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{built_in, built_in_for};

    fn criteria(exam: &str) -> PassCriteria {
        PassCriteria::from_pack(built_in_for(exam).expect("built in"), |_| None).expect("criteria")
    }

    #[test]
    fn required_thresholds_are_eighty_percent_rounded_up() {
        for pack in built_in() {
            let c = PassCriteria::from_pack(pack, |_| None).expect("criteria");
            assert_eq!(
                c.required_min,
                (c.required_max * 4).div_ceil(5),
                "{}",
                c.exam
            );
            assert!(c.general_min < c.general_max);
            assert!(!c.sources.is_empty());
        }
    }

    /// The published figures, year by year: (exam, required min/max, general min/max,
    /// prohibited limit, whether a verdict applying them all is provisional).
    #[test]
    fn every_year_from_2018_to_2026_has_its_criteria_and_a_verdict() {
        let years = [
            ("112", 2018, 160, 200, 208, 299, 3, false),
            ("113", 2019, 160, 200, 209, 296, 3, false),
            ("114", 2020, 158, 197, 217, 299, 3, false),
            ("115", 2021, 160, 200, 209, 300, 3, false),
            ("116", 2022, 158, 197, 214, 297, 3, false),
            ("117", 2023, 160, 200, 220, 295, 2, false),
            ("118", 2024, 160, 200, 230, 300, 3, false),
            ("119", 2025, 160, 200, 221, 300, 3, true),
            ("120", 2026, 160, 200, 221, 300, 3, true),
        ];
        for (exam, year, rmin, rmax, gmin, gmax, limit, provisional) in years {
            let c = criteria(exam);
            assert_eq!(
                (
                    c.year,
                    c.required_min,
                    c.required_max,
                    c.general_min,
                    c.general_max,
                    c.prohibited_max
                ),
                (year, rmin, rmax, gmin, gmax, limit),
                "{exam}"
            );
            assert_eq!(
                !c.provisional.is_empty(),
                provisional,
                "{exam}: {:?}",
                c.provisional
            );
            // The 119th exam's limit alone is provisional: a set without prohibited choices
            // never applies it.
            assert_eq!(
                c.judge(rmax, gmax, None).provisional,
                exam == "120",
                "{exam}"
            );
            // Just enough passes; a point short in either section fails; one prohibited
            // choice over the limit fails.
            let pass = c.judge(rmin, gmin, Some(limit));
            assert!(pass.pass, "{exam}");
            assert_eq!(pass.provisional, provisional, "{exam}");
            assert!(!c.judge(rmin - 1, gmax, Some(0)).pass, "{exam}");
            assert!(!c.judge(rmax, gmin - 1, None).pass, "{exam}");
            assert!(!c.judge(rmax, gmax, Some(limit + 1)).pass, "{exam}");
        }
    }

    #[test]
    fn all_three_rules_must_hold() {
        let c = criteria("116");
        assert!(c.judge(158, 214, None).pass);
        assert!(c.judge(158, 214, Some(3)).pass);
        assert!(!c.judge(158, 214, Some(4)).pass);
        assert!(!c.judge(157, 297, Some(0)).pass);
        assert!(!c.judge(197, 213, None).pass);
        assert!(built_in_for("121").is_none());
    }

    #[test]
    fn a_pass_mark_relative_to_the_examinees_needs_their_accuracy() {
        let mut pack = built_in_for("118").expect("118").clone();
        let general = pack
            .sections
            .iter_mut()
            .find(|s| s.section == Section::General)
            .expect("general");
        general.pass.kind = PassKind::ExamineeMean;
        general.pass.share = Some(0.9);
        general.pass.min = None;
        let refused = PassCriteria::from_pack(&pack, |_| None).unwrap_err();
        assert!(refused.contains("examinee accuracy"), "{refused}");
        let c = PassCriteria::from_pack(&pack, |s| (s == Section::General).then_some(241.3))
            .expect("criteria");
        // 0.9 × 241.3 = 217.17, rounded up.
        assert_eq!(c.general_min, 218);
    }
}
