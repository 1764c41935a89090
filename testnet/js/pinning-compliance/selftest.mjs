#!/usr/bin/env node
// Self-test of the harness: runs check.mjs against mock-service.mjs (an in-memory
// pinning service on 127.0.0.1, on a free port) and exits with check.mjs's code.
// Takes about 50 s (the checker sends one request a second). Run it offline:
//   unshare -rn sh -c 'ip link set lo up; node selftest.mjs'
import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const token = 'selftest-token'
const mock = spawn(process.execPath, [join(here, 'mock-service.mjs'), '0', token], { stdio: ['ignore', 'inherit', 'pipe'] })
const port = await new Promise((resolve, reject) => {
  let buf = ''
  const timer = setTimeout(() => reject(new Error('mock service did not start')), 10000)
  mock.stderr.on('data', (d) => {
    buf += d
    const m = buf.match(/127\.0\.0\.1:(\d+)/)
    if (m != null) { clearTimeout(timer); resolve(m[1]) }
  })
  mock.on('exit', (c) => reject(new Error(`mock service exited (${c})`)))
})
const check = spawn(process.execPath, [join(here, 'check.mjs'), `http://127.0.0.1:${port}`, token, '--timeout', '300'], { stdio: 'inherit' })
const code = await new Promise((resolve) => check.on('exit', (c) => resolve(c ?? 1)))
mock.kill()
process.exit(code)
