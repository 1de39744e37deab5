// Ask the authz server one question from Node.js: may this CRM user take this action?
//
// Clients are generated at run time from the repository's proto/ with
// @grpc/proto-loader (no protoc, no generated files to keep in sync): the .proto files
// are the contract, so a Node service always speaks the API version it was built with.
//
//   node check.js --server 127.0.0.1:50051 --org acme-eu --user u-sam \
//     --action view --module invoices [--product books] [--total 20000] [--write-field discount]
//   node check.js ... --attribute [--record-id inv-1]    (who to act as: Attribute; name the
//     --product where the module is in both products and the user in both)
//
// Prints the decision (or attribution) as JSON; exit code 0 allowed, 1 denied, 2 request
// refused, 3 no server answered (as `authz check`). A refusal prints the status code and
// message, then the google.rpc details decoded from the `grpc-status-details-bin`
// trailer: BadRequest (which field, what is wrong), ErrorInfo (a reason code to branch
// on), ... as one JSON line `details: [...]`.
"use strict";

const path = require("node:path");
const { parseArgs } = require("node:util");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

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

/** google.rpc.Status and the error detail types, from third_party/googleapis/. */
function loadErrorTypes() {
  const root = new protobuf.Root();
  // google/protobuf/*.proto (any, duration) are bundled with protobufjs.
  root.resolvePath = (_origin, target) => path.join(REPO, "third_party/googleapis", target);
  root.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], { keepCase: true });
  return root;
}

/** The details of a failed call: google.rpc.Status from the grpc-status-details-bin
 * trailer, each Any unpacked by its type name (unknown types keep only the name). */
function errorDetails(err) {
  const raw = err.metadata ? err.metadata.get("grpc-status-details-bin") : [];
  if (raw.length === 0) {
    return [];
  }
  const root = loadErrorTypes();
  const status = root.lookupType("google.rpc.Status").decode(raw[0]);
  return status.details.map((any) => {
    const name = any.type_url.slice(any.type_url.lastIndexOf("/") + 1);
    const type = root.lookup(name);
    if (!(type instanceof protobuf.Type)) {
      return { "@type": name };
    }
    return { "@type": name, ...type.toObject(type.decode(any.value), { longs: String, enums: String }) };
  });
}

function main() {
  const { values } = parseArgs({
    options: {
      server: { type: "string", default: process.env.AUTHZ_SERVER || "127.0.0.1:50051" },
      org: { type: "string" },
      user: { type: "string" },
      action: { type: "string" },
      module: { type: "string" },
      product: { type: "string", default: "" },
      total: { type: "string" },
      "write-field": { type: "string", multiple: true, default: [] },
      deadline: { type: "string", default: "5" },
      attribute: { type: "boolean", default: false },
      "record-id": { type: "string", default: "" },
    },
  });
  const authz = loadAuthz();
  const client = new authz.AuthzService(values.server, grpc.credentials.createInsecure());
  const request = {
    org_id: values.org,
    user: values.user,
    action: values.action,
    module: values.module,
    product: values.product,
    write_fields: values["write-field"],
  };
  if (values.total !== undefined) {
    request.record = { total: { value: Number(values.total) } };
  }
  const deadline = new Date(Date.now() + Number(values.deadline) * 1000);
  const done = (err, response) => {
    client.close();
    if (err) {
      console.error(`error: ${grpc.status[err.code]}: ${err.details}`);
      const details = errorDetails(err);
      for (const d of details) {
        for (const v of d.field_violations || []) {
          console.error(`  field ${v.field}: ${v.description}`);
        }
        if (d.reason) {
          console.error(`  reason ${d.reason} (${d.domain})`);
        }
      }
      console.error(`details: ${JSON.stringify(details)}`);
      if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) {
        process.exitCode = 3;
      } else {
        process.exitCode = err.code === grpc.status.PERMISSION_DENIED ? 1 : 2;
      }
      return;
    }
    console.log(JSON.stringify(response, null, 2));
    process.exitCode = values.attribute || response.decision === "DECISION_ALLOW" ? 0 : 1;
  };
  if (values.attribute) {
    const { org_id, user, action, module, product } = request;
    client.Attribute({ org_id, user, action, module, product, record_id: values["record-id"] },
      { deadline }, done);
  } else {
    client.Check(request, { deadline }, done);
  }
}

main();
