// Official Microsoft SignalR JavaScript client against the AnywhereNow simulator.
// Usage: node anywherenow_client.mjs <hubUrl> <target> [accessToken]
// Prints one JSON line per step: {"connected":id}, {"event":payload}, {"closed":error}.
import * as signalR from "@microsoft/signalr";

const [url, target, token] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const connection = new signalR.HubConnectionBuilder()
  .withUrl(url, {
    transport: signalR.HttpTransportType.WebSockets,
    accessTokenFactory: token ? () => token : undefined,
    headers: { "X-Js-Client": "microsoft-signalr" },
  })
  .configureLogging(signalR.LogLevel.Warning)
  .build();

const deadline = setTimeout(() => {
  say({ error: "timed out" });
  process.exit(2);
}, 30000);

connection.on(target, (payload) => say({ event: payload }));
connection.onclose((error) => {
  say({ closed: error ? String(error.message || error) : null });
  clearTimeout(deadline);
  process.exit(0);
});

try {
  await connection.start();
  say({ connected: connection.connectionId });
} catch (error) {
  say({ error: String(error) });
  process.exit(1);
}
