import init from '/kokushi_grading.js';
init();
