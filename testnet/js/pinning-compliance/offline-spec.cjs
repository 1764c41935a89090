'use strict'
// Preload (node --require) for @ipfs-shipyard/pinning-service-compliance.
//
// At run time the checker builds its Joi schemas with
//   oas2joi('https://raw.githubusercontent.com/ipfs/pinning-services-api-spec/v1.0.0/ipfs-pinning-service.yaml')
// i.e. it downloads the spec from GitHub. Offline that download fails and the four
// checks that validate a body against the spec (checkEmptyBearerToken,
// checkInvalidBearerToken, addPin, getAllPins) are silently skipped. This preload
// points that one URL at the vendored copy of the same file (spec tag v1.0.0,
// CC0) and refuses any other remote spec URL.
const path = require('node:path')
const { createRequire } = require('node:module')

const SPEC_URL = 'https://raw.githubusercontent.com/ipfs/pinning-services-api-spec/v1.0.0/ipfs-pinning-service.yaml'
const LOCAL_SPEC = path.join(__dirname, 'spec', 'ipfs-pinning-service-v1.0.0.yaml')

// Resolve swagger-parser exactly as oas2joi does, so we patch the instance it uses.
const CHECKER_DIR = path.join(__dirname, 'node_modules', '@ipfs-shipyard', 'pinning-service-compliance')
const fromChecker = createRequire(path.join(CHECKER_DIR, 'package.json'))
const fromOas2joi = createRequire(fromChecker.resolve('oas2joi'))
const SwaggerParser = fromOas2joi('swagger-parser')

const original = SwaggerParser.dereference
SwaggerParser.dereference = function (api, ...rest) {
  if (api === SPEC_URL) {
    api = LOCAL_SPEC
  } else if (typeof api === 'string' && /^[a-z]+:\/\//i.test(api)) {
    return Promise.reject(new Error(`offline-spec: refusing to fetch ${api}`))
  }
  return original.call(this, api, ...rest)
}
