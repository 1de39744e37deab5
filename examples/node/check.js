// Ask the authz server one question from Node.js: may this CRM user take this action?
//
// Clients are generated at run time from the repository's proto/ with
// @grpc/proto-loader (no protoc, no generated files to keep in sync): the .proto files
// are the contract, so a Node service always speaks the API version it was built with.
//
//   node check.js --server 127.0.0.1:50051 --org acme-eu --user u-sam \
//     --action view --module invoices [--total 20000] [--write-field discount]
//
// Prints the decision as JSON; exit code 0 allowed, 1 denied, 2 request refused,
// 3 no server answered (as `authz check`).
"use strict";

const path = require("node:path");
const { parseArgs } = require("node:util");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const REPO = path.resolve(__dirname, "..", "..");

/** Load authz.v1 from proto/ (google/rpc/status.proto comes from third_party/). */
function loadAuthz() {
  const definition = protoLoader.loadSync(path.join(REPO, "proto/authz/v1/authz.proto"), {
    includeDirs: [path.join(REPO, "proto"), path.join(REPO, "third_party/googleapis")],
    keepCase: true, // field names as in the proto (org_id), like grpcurl and Python
    longs: String, // int64 revisions as strings: no silent precision loss
    enums: String, // "DECISION_ALLOW", not 1
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).authz.v1;
}

function main() {
  const { values } = parseArgs({
    options: {
      server: { type: "string", default: process.env.AUTHZ_SERVER || "127.0.0.1:50051" },
      org: { type: "string" },
      user: { type: "string" },
      action: { type: "string" },
      module: { type: "string" },
      total: { type: "string" },
      "write-field": { type: "string", multiple: true, default: [] },
      deadline: { type: "string", default: "5" },
    },
  });
  const authz = loadAuthz();
  const client = new authz.AuthzService(values.server, grpc.credentials.createInsecure());
  const request = {
    org_id: values.org,
    user: values.user,
    action: values.action,
    module: values.module,
    write_fields: values["write-field"],
  };
  if (values.total !== undefined) {
    request.record = { total: { value: Number(values.total) } };
  }
  const deadline = new Date(Date.now() + Number(values.deadline) * 1000);
  client.Check(request, { deadline }, (err, response) => {
    client.close();
    if (err) {
      console.error(`error: ${grpc.status[err.code]}: ${err.details}`);
      process.exitCode = err.code === grpc.status.UNAVAILABLE ||
        err.code === grpc.status.DEADLINE_EXCEEDED ? 3 : 2;
      return;
    }
    console.log(JSON.stringify(response, null, 2));
    process.exitCode = response.decision === "DECISION_ALLOW" ? 0 : 1;
  });
}

main();
