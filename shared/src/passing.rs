//! The pass criteria (合格基準) of the medical licensing exams Kokushi knows, as data with
//! their source, and the pass/fail judgement of a year's points.
//!
//! A candidate passes when all three hold: the required section (必修問題) reaches 80 % of its
//! points, the general section (一般問題 and 臨床実地問題 outside the required section) reaches
//! the year's cut-off, and at most three prohibited choices (禁忌肢) were chosen.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// One year's published criteria.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PassCriteria {
    /// The exam's number, e.g. "116".
    pub exam: Cow<'static, str>,
    pub year: u16,
    /// Points needed in the required section, and its total after excluded questions.
    pub required_min: u32,
    pub required_max: u32,
    /// Points needed in the general section, and its total after excluded questions.
    pub general_min: u32,
    pub general_max: u32,
    /// The most prohibited choices a passing candidate may have chosen.
    pub prohibited_max: u32,
    /// Whether the figures were checked against the Ministry's announcement (as published or
    /// as reproduced word for word by the source named).
    pub confirmed: bool,
    /// Where the figures come from.
    pub source: Cow<'static, str>,
}

/// The 112th to 116th exams (2018–2022), the years IgakuQA covers.
pub const CRITERIA: &[PassCriteria] = &[
    PassCriteria {
        exam: Cow::Borrowed("112"),
        year: 2018,
        required_min: 160,
        required_max: 200,
        general_min: 208,
        general_max: 299,
        prohibited_max: 3,
        confirmed: true,
        source: Cow::Borrowed(
            "MHLW, 第112回医師国家試験の合格発表について (2018-03-19); checked against its text as reproduced at savingdoctor.com/entry/2018/03/19/223235",
        ),
    },
    PassCriteria {
        exam: Cow::Borrowed("113"),
        year: 2019,
        required_min: 160,
        required_max: 200,
        general_min: 209,
        general_max: 296,
        prohibited_max: 3,
        confirmed: true,
        source: Cow::Borrowed(
            "MHLW, 第113回医師国家試験の合格発表について (2019-03-18); checked against its report in jmedj.co.jp/journal/paper/detail.php?id=11988",
        ),
    },
    PassCriteria {
        exam: Cow::Borrowed("114"),
        year: 2020,
        required_min: 158,
        required_max: 197,
        general_min: 217,
        general_max: 299,
        prohibited_max: 3,
        confirmed: true,
        source: Cow::Borrowed(
            "MHLW, 第114回医師国家試験の合格発表について (2020-03-16); checked against its text as reproduced at ishiyaku-k.com/medical/infomation/info_top.html",
        ),
    },
    PassCriteria {
        exam: Cow::Borrowed("115"),
        year: 2021,
        required_min: 160,
        required_max: 200,
        general_min: 209,
        general_max: 300,
        prohibited_max: 3,
        confirmed: true,
        source: Cow::Borrowed(
            "MHLW, 第115回医師国家試験の合格発表について (2021-03-16); checked against its text as quoted in newtongym8.com, 「第115回医師国家試験 合格発表」",
        ),
    },
    PassCriteria {
        exam: Cow::Borrowed("116"),
        year: 2022,
        required_min: 158,
        required_max: 197,
        general_min: 214,
        general_max: 297,
        prohibited_max: 3,
        confirmed: true,
        source: Cow::Borrowed(
            "MHLW, 第116回医師国家試験の合格発表について (2022-03-16); checked against its text as quoted at doctor.mynavi.jp/column/kokushi2022",
        ),
    },
];

/// The criteria for an exam, by its number and year (both must agree).
pub fn criteria(exam: &str, year: u16) -> Option<&'static PassCriteria> {
    CRITERIA.iter().find(|c| c.exam == exam && c.year == year)
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_thresholds_are_eighty_percent_rounded_up() {
        for c in CRITERIA {
            assert_eq!(
                c.required_min,
                (c.required_max * 4).div_ceil(5),
                "{}",
                c.exam
            );
            assert!(c.general_min < c.general_max);
        }
    }

    #[test]
    fn all_three_rules_must_hold() {
        let c = criteria("116", 2022).expect("known");
        assert!(c.judge(158, 214, None).pass);
        assert!(c.judge(158, 214, Some(3)).pass);
        assert!(!c.judge(158, 214, Some(4)).pass);
        assert!(!c.judge(157, 297, Some(0)).pass);
        assert!(!c.judge(197, 213, None).pass);
        assert!(criteria("116", 2023).is_none());
    }
}
