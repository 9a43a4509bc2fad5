// The Socket.IO relay that `scripts/bench ws --compare socketio` measures CollabKit against:
// each socket joins the room its handshake names (auth or query `room`), and every `presence`
// event it emits goes to the room's other sockets. No auth, no persistence, no coalescing.
// Usage: node relay.mjs [port] (or RELAY_PORT; 0, the default, takes any free port).
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const port = Number(process.argv[2] ?? process.env.RELAY_PORT ?? 0);
const http = createServer();
const io = new Server(http, { transports: ['websocket'], serveClient: false });
io.on('connection', (socket) => {
  const room = String(socket.handshake.auth.room ?? socket.handshake.query.room ?? '');
  socket.join(room);
  socket.on('presence', (data) => socket.to(room).emit('presence', data));
});
// The bench reads this line to learn the port.
http.listen(port, '127.0.0.1', () => console.log(`listening ${http.address().port}`));
