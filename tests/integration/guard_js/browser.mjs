// Opens the guard test page (page.html, served through tessera) in headless Chromium and prints
// what the page found: {"status", "body", "contentType", "keyid"}, or {"error"} when client.js
// threw. Debian's Chromium is driven by playwright-core; nothing is downloaded.
//
//   NODE_PATH=DIR/node_modules node browser.mjs
//       --url https://127.0.0.1:PORT/guard/page.html?login=1 [--chromium /usr/bin/chromium]
// (DIR as given to setup.sh.)
//
// Prints one JSON line and exits 0 once the page has a result. When there is none within 20 s,
// or Chromium fails, the page's console and failed requests go to stderr with exit status 1.
// The browser is closed either way.

import {createRequire} from 'node:module';
import {parseArgs} from 'node:util';

const require = createRequire(import.meta.url);
const {chromium} = require('playwright-core');

const kTimeoutMs = 20000;

// Past this, something hangs that the per-step timeouts did not catch; Playwright still kills the
// browser it launched on exit.
setTimeout(() => {
  process.stderr.write('guard browser: no result after 60 s\n');
  process.exit(1);
}, 3 * kTimeoutMs).unref();

async function main() {
  const {values} = parseArgs({options: {
    url: {type: 'string'},
    chromium: {type: 'string', default: '/usr/bin/chromium'},
  }});
  if (!values.url) throw new Error('--url is required');

  const log = [];
  const browser = await chromium.launch({
    executablePath: values.chromium,
    headless: true,
    // The test's certificate is made at run time; nothing in the sandbox is needed.
    args: ['--ignore-certificate-errors', '--no-sandbox'],
    timeout: kTimeoutMs,
  });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => log.push(`page error: ${e.message}`));
    page.on('requestfailed',
            (r) => log.push(`failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
    page.on('response', (r) => log.push(`${r.status()} ${r.request().method()} ${r.url()}`));
    try {
      await page.goto(values.url, {timeout: kTimeoutMs});
      const handle = await page.waitForFunction(() => document.body?.dataset.result,
                                                null, {timeout: kTimeoutMs});
      const result = JSON.parse(await handle.jsonValue());
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } catch (e) {
      throw new Error(`${e.message.split('\n')[0]}\n${log.join('\n')}`);
    }
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write(`guard browser: ${e.message}\n`);
  process.exit(1);
});
