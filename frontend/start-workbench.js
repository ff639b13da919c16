import init from '/kokushi_workbench.js';
init();
