//! Per-room per-minute activity counters.

use collabkit::domain::{AccountId, RoomId, Timestamp};
use collabkit::store::{MinuteRange, RoomMinute};

use crate::fixture::{contract, Backend, Fixture};

contract!(batches_add_up_per_room_and_minute);

async fn batches_add_up_per_room_and_minute(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let (a, b) = (f.room(account).await.room_id, f.room(account).await.room_id);
    let minute = |m: i64| {
        Timestamp::from_millis(1_700_000_000_000 - 1_700_000_000_000 % 60_000 + m * 60_000)
    };
    let counts = |room: RoomId, at: i64, broadcasts: i64, peak: i64| RoomMinute {
        account_id: account,
        room_id: room,
        minute: minute(at),
        broadcasts,
        peak_users: peak,
        joins: 1,
        ..RoomMinute::default()
    };
    f.store
        .add_room_minutes(&[counts(a, 0, 5, 2), counts(b, 0, 1, 1), counts(a, 1, 2, 1)])
        .await
        .unwrap();
    // A second batch adds to the same minute; the peak is the larger one.
    f.store
        .add_room_minutes(&[counts(a, 0, 3, 4)])
        .await
        .unwrap();
    // Counts of an account that no longer exists are dropped, not an error.
    let gone = RoomMinute {
        account_id: AccountId::new(),
        ..counts(RoomId::new(), 0, 1, 1)
    };
    f.store.add_room_minutes(&[gone]).await.unwrap();

    let range = MinuteRange {
        account_id: account,
        room_id: Some(a),
        from: minute(0),
        to: minute(10),
        step_ms: 60_000,
    };
    let room_a = f.store.room_minutes(range).await.unwrap();
    assert_eq!(room_a.len(), 2);
    assert_eq!(
        (room_a[0].broadcasts, room_a[0].peak_users, room_a[0].joins),
        (8, 4, 2)
    );
    assert_eq!(room_a[1].minute, minute(1));

    let whole = f
        .store
        .room_minutes(MinuteRange {
            room_id: None,
            ..range
        })
        .await
        .unwrap();
    assert_eq!(whole.len(), 2);
    assert_eq!(
        (whole[0].broadcasts, whole[0].peak_users),
        (9, 5),
        "rooms added up"
    );
    let later = f
        .store
        .room_minutes(MinuteRange {
            from: minute(1),
            ..range
        })
        .await
        .unwrap();
    assert_eq!(later.len(), 1);

    let busiest = f.store.busiest_rooms(range, 10).await.unwrap();
    assert_eq!(busiest.first().map(|(room, _)| *room), Some(a));
    assert_eq!(busiest.len(), 2);

    // Steps of several minutes add their minutes up and keep the largest peak.
    let stepped = f
        .store
        .room_minutes(MinuteRange {
            room_id: None,
            step_ms: 5 * 60_000,
            ..range
        })
        .await
        .unwrap();
    assert_eq!(stepped.len(), 1);
    assert_eq!(
        (
            stepped[0].broadcasts,
            stepped[0].peak_users,
            stepped[0].joins
        ),
        (11, 5, 4)
    );
    assert_eq!(stepped[0].minute, minute(0));

    // Whole hours are read from the hourly table, which the same batches wrote.
    let hour_start = minute(0).as_millis() - minute(0).as_millis() % 3_600_000;
    let hourly = f
        .store
        .room_minutes(MinuteRange {
            room_id: None,
            from: Timestamp::from_millis(hour_start),
            to: Timestamp::from_millis(hour_start + 3_600_000),
            step_ms: 3_600_000,
            ..range
        })
        .await
        .unwrap();
    assert_eq!(hourly.len(), 1);
    assert_eq!(
        (hourly[0].broadcasts, hourly[0].peak_users, hourly[0].joins),
        (11, 5, 4)
    );

    // Two minutes and two hours (rooms a and b) start before minute 1.
    assert_eq!(
        f.store.delete_room_minutes_before(minute(1)).await.unwrap(),
        4
    );
    assert_eq!(
        f.store
            .room_minutes(MinuteRange {
                room_id: None,
                ..range
            })
            .await
            .unwrap()
            .len(),
        1
    );
}
