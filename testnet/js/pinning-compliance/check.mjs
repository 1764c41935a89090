#!/usr/bin/env node
// Runs @ipfs-shipyard/pinning-service-compliance against one endpoint, offline,
// and turns its report into an exit code.
//
//   node check.mjs <endpoint> <token> [--timeout <seconds>] [--report-dir <dir>] [-- <extra checker flags, e.g. -v -d>]
//
// <endpoint> is the base URL that /pins hangs off (no trailing slash), e.g.
// http://127.0.0.1:5001/pinning-service-api (whatever Cairn mounts it at).
//
// Why a wrapper: the checker itself exits 0 whatever the outcome (even when no
// request got an answer), skips silently the checks it cannot start, and downloads
// the spec from GitHub at run time. Here:
//   - offline-spec.cjs (preloaded) serves the spec from spec/ instead;
//   - success means the checker's dist/docs/<hostname>.json (it writes its report
//     inside the installed package) says success=true AND total is 9, the number
//     of top-level checks it has (checkEmptyBearerToken,
//     checkInvalidBearerToken, addPin, deleteNewPin, getAllPins, replacePin,
//     matchPin, testPagination, deleteAllPins);
//   - the run is killed after --timeout seconds (default 600).
// Exit: 0 all 9 passed; 1 some check failed or did not run; 2 usage; 3 no report
// (checker crashed, hung, or the endpoint never answered).
// Run it inside a network namespace with only loopback, e.g.
//   unshare -rn sh -c 'ip link set lo up; node check.mjs http://127.0.0.1:8787 secret'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, rmSync, mkdirSync, cpSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const EXPECTED_CHECKS = 9
const here = dirname(fileURLToPath(import.meta.url))
const checkerDir = join(here, 'node_modules', '@ipfs-shipyard', 'pinning-service-compliance')
const docsDir = join(checkerDir, 'dist', 'docs') // the checker's docsDir: dist/src/utils/../../docs

const args = process.argv.slice(2)
const dd = args.indexOf('--')
const extra = dd >= 0 ? args.splice(dd).slice(1) : []
let timeoutS = 600
let reportDir = null
const positional = []
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--timeout') timeoutS = Number(args[++i])
  else if (args[i] === '--report-dir') reportDir = args[++i]
  else positional.push(args[i])
}
if (positional.length !== 2 || !(timeoutS > 0)) {
  console.error('usage: node check.mjs <endpoint> <token> [--timeout <seconds>] [--report-dir <dir>] [-- <checker flags>]')
  process.exit(2)
}
// the client appends /pins to the endpoint as is: a trailing slash would make //pins
const endpoint = positional[0].replace(/\/+$/, '')
const token = positional[1]
if (!existsSync(join(checkerDir, 'dist', 'src', 'index.js'))) {
  console.error(`checker not installed: run "npm ci --ignore-scripts" in ${here}`)
  process.exit(2)
}
const hostname = new URL(endpoint).hostname
const reportJson = join(docsDir, `${hostname}.json`)
const reportMd = join(docsDir, `${hostname}.md`)
for (const p of [reportJson, reportMd, join(docsDir, hostname)]) rmSync(p, { recursive: true, force: true })

const child = spawn(process.execPath, [
  '--require', join(here, 'offline-spec.cjs'),
  join(checkerDir, 'dist', 'src', 'index.js'),
  '-s', endpoint, token, ...extra
], {
  cwd: here,
  stdio: 'inherit',
  // the checker stamps pins it creates with meta.createdBy = $npm_package_name
  env: { ...process.env, npm_package_name: '@ipfs-shipyard/pinning-service-compliance', FORCE_COLOR: process.env.FORCE_COLOR ?? '0' }
})
let timedOut = false
const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, timeoutS * 1000)
const code = await new Promise((resolve) => child.on('exit', (c, s) => resolve(c ?? s)))
clearTimeout(timer)

if (reportDir != null && existsSync(reportJson)) {
  mkdirSync(reportDir, { recursive: true })
  for (const p of [reportJson, reportMd, join(docsDir, hostname)]) {
    if (existsSync(p)) cpSync(p, join(reportDir, p.slice(docsDir.length + 1)), { recursive: true })
  }
}
if (timedOut || !existsSync(reportJson)) {
  console.error(timedOut
    ? `compliance: checker killed after ${timeoutS}s`
    : `compliance: checker exited (${code}) without writing ${reportJson}; the endpoint probably never answered a request`)
  console.log(`compliance: 0 passed, ${EXPECTED_CHECKS} failed`)
  process.exit(3)
}
const { total, passed, failed, success } = JSON.parse(readFileSync(reportJson, 'utf8'))
// list the failing expectations (❌) and the first error (⚠️) of each failed section
// of the markdown report (a parent check repeats its children's results)
if (!success && existsSync(reportMd)) {
  const out = []
  let title = null
  let lines = new Set()
  let errs = 0
  for (const line of readFileSync(reportMd, 'utf8').split('\n')) {
    if (line.startsWith('## ')) {
      title = line.includes('FAILED') ? line.slice(3) : null
      lines = new Set()
      errs = 0
    } else if (title != null && /^\s+(❌|⚠️)/u.test(line) && !lines.has(line.trim())) {
      lines.add(line.trim())
      if (line.trim().startsWith('⚠️') && errs++ > 0) continue
      out.push(`FAIL ${title} :: ${line.trim()}`)
    }
  }
  out.slice(0, 80).forEach((l) => console.error(l))
  if (out.length > 80) console.error(`... ${out.length - 80} more lines; see the report`)
}
const missing = EXPECTED_CHECKS - total
if (missing > 0) console.error(`compliance: ${missing} of ${EXPECTED_CHECKS} checks never ran (see the checker's error lines above)`)
console.error(`compliance report: ${reportMd}`)
console.log(`compliance: ${passed} passed, ${failed + Math.max(missing, 0)} failed`)
process.exit(success === true && total === EXPECTED_CHECKS ? 0 : 1)
