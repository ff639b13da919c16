//! An accuracy and its confidence interval as a small SVG whisker on a 0–100% axis.

use leptos::prelude::*;

use crate::chart::whisker;
use crate::format;
use crate::i18n::{self, tf};

const WIDTH: f64 = 96.0;

#[component]
pub fn AccuracyWhisker(point: f64, interval: (f64, f64)) -> impl IntoView {
    let w = whisker(point, interval, WIDTH);
    let title = tf(
        i18n::LEADERBOARD_WHISKER_TITLE,
        &[
            ("point", &format::percent(point)),
            ("low", &format::percent(interval.0)),
            ("high", &format::percent(interval.1)),
        ],
    );
    let label = title.clone();
    view! {
        <svg
            class="whisker"
            width=WIDTH
            height="12"
            viewBox=format!("0 0 {WIDTH} 12")
            role="img"
            aria-label=label
        >
            <title>{title}</title>
            <line class="axis" x1="0" x2=WIDTH y1="6" y2="6" />
            <line class="half" x1=WIDTH / 2.0 x2=WIDTH / 2.0 y1="2" y2="10" />
            <line class="ci" x1=w.low x2=w.high y1="6" y2="6" />
            <line class="ci" x1=w.low x2=w.low y1="3" y2="9" />
            <line class="ci" x1=w.high x2=w.high y1="3" y2="9" />
            <circle class="estimate" cx=w.point cy="6" r="3" />
        </svg>
    }
}
