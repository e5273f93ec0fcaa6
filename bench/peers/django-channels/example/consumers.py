"""The tutorial's consumer (channels 1 `ws_connect`/`ws_disconnect`), in channels 4 form.

As in the tutorial: every socket joins the group "users"; on connect the group is told
`{"username": NAME, "is_logged_in": true}`, on disconnect `false`.
"""
from channels.generic.websocket import AsyncJsonWebsocketConsumer


class UserConsumer(AsyncJsonWebsocketConsumer):
    groups = ["users"]  # group_add on connect, group_discard on disconnect

    async def connect(self):
        user = self.scope["user"]
        if not user.is_authenticated:
            # The tutorial's page is login-only; channels 1 would have sent an anonymous
            # username. Refuse, as Roster does.
            await self.close()
            return
        await self.accept()
        await self.channel_layer.group_send(
            "users", {"type": "user.update", "username": user.username, "is_logged_in": True}
        )

    async def disconnect(self, code):
        user = self.scope["user"]
        if user.is_authenticated:
            await self.channel_layer.group_send(
                "users", {"type": "user.update", "username": user.username, "is_logged_in": False}
            )

    async def user_update(self, event):
        await self.send_json({"username": event["username"], "is_logged_in": event["is_logged_in"]})
