/**
 * `GET /v5/firewall/rules` (`vm.firewallRules()`): the rules of the account's VMs, from their
 * engine records. Rules are made with the VM they belong to (its create's `firewall` block);
 * creating and deleting standalone rules stays a coded 501 (unsupported.ts).
 * @module
 */
import { createRoute } from "@hono/zod-openapi";
import { FirewallRuleList, ListFirewallRulesQuery } from "@capsule/contract/v5";
import type { App, Deps } from "../../context.js";
import { account, errors, json, security } from "../common.js";
import { firewallRules } from "./firewall.js";
import { page } from "./views.js";

export function register(app: App, { svc }: Deps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v5/firewall/rules",
      summary: "List firewall rules (v5)",
      description:
        "The rules of one VM (`vmId`, another account's is a 404) or of all the account's VMs, each VM's in its create's order. A VM created through /v1 shows what its egress amounts to. Capsule has no VPCs or tunnels: a `vpcId` or `tunnelId` filter lists nothing.",
      security,
      request: { query: ListFirewallRulesQuery },
      responses: { 200: json(FirewallRuleList), ...errors(400, 404) },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const acc = account(c);
      // Each VM's rules come from the record of one engine read: one listing, or the one VM's record.
      const vms = q.vpcId !== undefined || q.tunnelId !== undefined ? [] : q.vmId !== undefined ? [await svc.views.getWithEngine(acc, q.vmId)] : await svc.views.listWithEngine(acc);
      const rules = vms.flatMap((v) => firewallRules(v.info.id, v.record));
      return c.json({ rules: page(rules, q), totalCount: rules.length }, 200);
    },
  );
}
