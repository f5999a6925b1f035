// placeholder
export const DASHBOARD_HTML = '<!doctype html><title>balancer</title>';
export const DASHBOARD_SECURITY_HEADERS: Readonly<Record<string, string>> = {};
