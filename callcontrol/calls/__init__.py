"""Call orchestration over ARI: inbound routing to users, re-adoption, provisioning."""
