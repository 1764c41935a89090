#!/usr/bin/env node
// A second, independent CID reference for Cairn's tests: js-ipfs-unixfs's importer, run
// hash-only (blocks go nowhere).
//
//   node testnet/js/import.mjs [--cid-version 0|1] [--raw-leaves|--no-raw-leaves]
//                              [--profile unixfs-v0-2015|unixfs-v1-2025]
//                              [--shard-split-threshold N] [--hidden] PATH
//
// Prints one JSON line per entry, {"path": ..., "cid": ..., "size": ...}, root last, with paths
// as `ipfs add -r PATH` prints them (the base name of PATH, then `/`-joined children).
//
// Defaults match Kubo's `ipfs add`: profile `unixfs-v0-2015` (size-262144 chunks, balanced layout
// with 174 links a node, links-bytes HAMT estimate, Links before Data), CIDv0 with UnixFS-wrapped
// leaves; `--cid-version 1` turns raw leaves on, as Kubo's `--cid-version=1` does. Hidden files
// (names starting with `.`) are skipped unless `--hidden`, as `ipfs add -r` does.
//
// HAMT threshold: Kubo 0.40 and later shard when the estimate is over 256 KiB (`>`), as this
// importer does with its default `shardSplitThresholdBytes` of 262144, which we pass. (Kubo 0.39
// and earlier sharded at equality, `>=`; `--shard-split-threshold 262143` reproduces that.)

import { createReadStream } from 'node:fs'
import { lstat, readdir, readFile, readlink } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { importer } from 'ipfs-unixfs-importer'

const KUBO_SHARD_SPLIT_THRESHOLD = 256 * 1024
const SMALL_FILE = 1 << 20

function usage (msg) {
  if (msg) process.stderr.write(`import.mjs: ${msg}\n`)
  process.stderr.write('usage: import.mjs [--cid-version 0|1] [--raw-leaves|--no-raw-leaves] ' +
    '[--profile NAME] [--shard-split-threshold N] [--hidden] PATH\n')
  process.exit(2)
}

function parseArgs (argv) {
  const o = { cidVersion: 0, rawLeaves: undefined, profile: 'unixfs-v0-2015', threshold: KUBO_SHARD_SPLIT_THRESHOLD, hidden: false, path: undefined }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--cid-version') {
      const v = value()
      if (v !== '0' && v !== '1') usage('--cid-version must be 0 or 1')
      o.cidVersion = Number(v)
    } else if (a === '--raw-leaves') {
      o.rawLeaves = true
    } else if (a === '--no-raw-leaves') {
      o.rawLeaves = false
    } else if (a === '--profile') {
      o.profile = value()
      if (o.profile !== 'unixfs-v0-2015' && o.profile !== 'unixfs-v1-2025') usage(`unknown profile ${o.profile}`)
    } else if (a === '--shard-split-threshold') {
      o.threshold = Number(value())
      if (!Number.isInteger(o.threshold) || o.threshold < 0) usage('bad --shard-split-threshold')
    } else if (a === '--hidden') {
      o.hidden = true
    } else if (a.startsWith('--')) {
      usage(`unknown option ${a}`)
    } else if (o.path === undefined) {
      o.path = a
    } else {
      usage('only one PATH')
    }
  }
  if (o.path === undefined) usage('PATH is missing')
  // Kubo: --cid-version=1 implies --raw-leaves unless told otherwise.
  if (o.rawLeaves === undefined) o.rawLeaves = o.cidVersion === 1
  return o
}

// Depth-first walk yielding importer candidates. Directories are yielded too, so empty ones exist.
// Empty directories (after skipping hidden names) are recorded in `empty`: see main().
async function * candidates (fsPath, importPath, hidden, empty) {
  const st = await lstat(fsPath)
  if (st.isSymbolicLink()) {
    yield { path: importPath, link: await readlink(fsPath) }
  } else if (st.isDirectory()) {
    yield { path: importPath }
    const names = (await readdir(fsPath)).sort().filter((n) => hidden || !n.startsWith('.'))
    if (names.length === 0) empty.push(importPath)
    for (const name of names) {
      yield * candidates(join(fsPath, name), `${importPath}/${name}`, hidden, empty)
    }
  } else if (st.isFile()) {
    // Small files in one read: a stream per file costs more than the file.
    const content = st.size <= SMALL_FILE ? await readFile(fsPath) : createReadStream(fsPath, { highWaterMark: SMALL_FILE })
    yield { path: importPath, content }
  } else {
    throw new Error(`unsupported file type: ${fsPath}`)
  }
}

// Hash only: the importer needs somewhere to put blocks, and we need none of them.
const blackHole = { put: async (cid) => cid }

async function main () {
  const o = parseArgs(process.argv.slice(2))
  const rootName = basename(o.path.replace(/\/+$/, '')) || '/'
  const options = {
    profile: o.profile,
    cidVersion: o.cidVersion,
    rawLeaves: o.rawLeaves,
    shardSplitThresholdBytes: o.threshold,
    wrapWithDirectory: false
  }
  let root
  const lines = []
  const empty = []
  for await (const entry of importer(candidates(o.path, rootName, o.hidden, empty), blackHole, options)) {
    const line = { path: entry.path, cid: entry.cid.toString(), size: Number(entry.size) }
    if (entry.path === rootName) {
      root = line
    } else {
      lines.push(line)
    }
  }
  if (root === undefined) throw new Error('the importer yielded no root entry')
  // The importer links empty subdirectories into their parents but does not yield them, while
  // `ipfs add -r` prints them. All empty directories are the same node: import one on its own.
  const subdirs = empty.filter((p) => p !== rootName)
  if (subdirs.length > 0) {
    let one
    for await (const entry of importer([{ path: 'empty' }], blackHole, { ...options })) one = entry
    for (const path of subdirs) lines.push({ path, cid: one.cid.toString(), size: Number(one.size) })
  }
  lines.push(root)
  process.stdout.write(lines.map((l) => JSON.stringify(l)).join('\n') + '\n')
}

main().catch((err) => {
  process.stderr.write(`import.mjs: ${err.stack ?? err}\n`)
  process.exit(1)
})
