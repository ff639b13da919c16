import init from '/kokushi_frontend.js';
init();
